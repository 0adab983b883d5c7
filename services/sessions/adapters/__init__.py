"""Vehicle APIs behind one small interface (vehicles.VehicleReader): the Tesla Fleet API and Smartcar."""

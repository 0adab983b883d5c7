"""Third parties of the merchants service: Square (OAuth connection, locations, orders)."""

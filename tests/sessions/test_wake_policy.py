"""The wake policy of a read (polling.read_vehicle), without a fleet: a car that answers is read once and the
question whether waking is justified is never asked; a sleeping car is woken only when it is."""

from __future__ import annotations

import datetime

import pytest

from services.sessions import polling
from services.sessions.adapters.vehicles import VehicleAsleep, VehicleReading


class Car:
    """A VehicleReader whose car sleeps through its first `asleep_reads` reads."""

    def __init__(self, asleep_reads: int) -> None:
        self.asleep_reads = asleep_reads
        self.reads = 0
        self.wakes = 0

    async def read(self, vehicle_id: str) -> VehicleReading:
        self.reads += 1
        if self.reads <= self.asleep_reads:
            raise VehicleAsleep("asleep")
        at = datetime.datetime(2026, 6, 10, tzinfo=datetime.UTC)
        return VehicleReading(vehicle_id=vehicle_id, read_at=at, charging_state="Charging", charging=True)

    async def wake(self, vehicle_id: str) -> bool:
        self.wakes += 1
        return True


class Question:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked = 0

    async def __call__(self) -> bool:
        self.asked += 1
        return self.answer


async def test_an_awake_car_is_read_once_without_asking_whether_waking_is_justified() -> None:
    car, justified = Car(asleep_reads=0), Question(True)
    reading = await polling.read_vehicle(car, "v1", may_wake=justified, pause_s=0)
    assert reading.charging and (car.reads, car.wakes, justified.asked) == (1, 0, 0)


async def test_a_sleeping_car_is_not_woken_when_waking_is_not_justified() -> None:
    car, justified = Car(asleep_reads=1), Question(False)
    with pytest.raises(VehicleAsleep):
        await polling.read_vehicle(car, "v1", may_wake=justified, pause_s=0)
    assert (car.reads, car.wakes, justified.asked) == (1, 0, 1)


async def test_a_sleeping_car_of_a_charging_driver_is_woken_and_read_again() -> None:
    car, justified = Car(asleep_reads=2), Question(True)
    reading = await polling.read_vehicle(car, "v1", may_wake=justified, pause_s=0)
    assert reading.charging and (car.reads, car.wakes, justified.asked) == (3, 2, 1)


async def test_a_car_that_does_not_wake_is_given_up_after_the_attempts() -> None:
    car = Car(asleep_reads=polling.WAKE_ATTEMPTS)
    with pytest.raises(VehicleAsleep):
        await polling.read_vehicle(car, "v1", may_wake=True, pause_s=0)
    assert (car.reads, car.wakes) == (polling.WAKE_ATTEMPTS, polling.WAKE_ATTEMPTS - 1)

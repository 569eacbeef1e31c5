"""The routing problem: vehicles with live starts, jobs with windows and locks, travel times."""

from __future__ import annotations

from dataclasses import dataclass, field

from decision.errors import InvalidProblem
from decision.travel import TravelMatrix


@dataclass(frozen=True)
class Job:
    """A stop to serve. Times are seconds on the problem's clock (0 = now).

    ``required`` jobs cannot be dropped; ``locked`` ones stay on ``current_vehicle`` in
    their order among that vehicle's locked jobs; ``seen`` ones were already shown to a
    driver, so moving them to another vehicle costs the disruption weight.
    """

    job_id: str
    location: int
    window_start: float | None = None
    window_end: float | None = None
    service: float = 0.0
    demand: int = 0
    priority: int = 0
    required: bool = False
    locked: bool = False
    seen: bool = False
    current_vehicle: str | None = None
    committed: bool = False  # already promised on a route: dropping it weighs ten times more
    hard_window: bool = False  # served by its window end or not at all (new orders)
    barred: frozenset[str] = frozenset()  # vehicles it may not go to (its id is taken there)


@dataclass(frozen=True)
class Vehicle:
    """A vehicle (a driver's route): where and when it starts, its limits and current sequence.

    ``end_location`` None means the route ends at its last stop. ``latest_start`` None
    means the vehicle leaves exactly at ``start_time`` (a driver already on the road).
    ``route`` is the current sequence (warm start, disruption, locks); ``first_job`` the
    stop being approached, which stays first.
    """

    vehicle_id: str
    start_location: int
    end_location: int | None = None
    start_time: float = 0.0
    latest_start: float | None = None
    shift_end: float | None = None
    capacity: int | None = None
    route: tuple[str, ...] = ()
    first_job: str | None = None


@dataclass(frozen=True)
class Problem:
    """Vehicles, jobs and the travel matrix over their locations.

    ``hard_windows``: a visit must start by its window end (else the job is dropped);
    otherwise lateness is allowed and costs the ``late`` weight. ``scale``: integer solver
    steps per time unit (10 for seconds; 1000 for Solomon's small units).
    """

    vehicles: tuple[Vehicle, ...]
    jobs: tuple[Job, ...]
    travel: TravelMatrix
    hard_windows: bool = False
    scale: int = 10
    _job_index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = self.travel.size
        if not self.vehicles:
            raise InvalidProblem("a problem needs at least one vehicle")
        if self.scale < 1:
            raise InvalidProblem(f"scale={self.scale} must be >= 1")
        vids = [v.vehicle_id for v in self.vehicles]
        if len(set(vids)) != len(vids):
            raise InvalidProblem("vehicle ids must be unique")
        for job in self.jobs:
            if job.job_id in self._job_index:
                raise InvalidProblem(f"job id {job.job_id!r} appears twice")
            self._job_index[job.job_id] = len(self._job_index)
            if not 0 <= job.location < n:
                raise InvalidProblem(f"job {job.job_id}: location {job.location} not in [0, {n})")
            if job.demand < 0 or job.service < 0:
                raise InvalidProblem(f"job {job.job_id}: demand and service must be >= 0")
            if job.locked and job.current_vehicle not in vids:
                raise InvalidProblem(f"locked job {job.job_id} has no current vehicle")
        seen_jobs: set[str] = set()
        for v in self.vehicles:
            for loc in (v.start_location, v.end_location):
                if loc is not None and not 0 <= loc < n:
                    raise InvalidProblem(f"vehicle {v.vehicle_id}: location {loc} not in [0, {n})")
            for jid in v.route:
                if jid not in self._job_index:
                    raise InvalidProblem(f"vehicle {v.vehicle_id}: route has unknown job {jid}")
                if jid in seen_jobs:
                    raise InvalidProblem(f"job {jid} is on two routes")
                seen_jobs.add(jid)
            if v.first_job is not None and (not v.route or v.route[0] != v.first_job):
                raise InvalidProblem(f"vehicle {v.vehicle_id}: first_job must open its route")

    def job(self, job_id: str) -> Job:
        """The job with this id."""
        return self.jobs[self._job_index[job_id]]

    def has_job(self, job_id: str) -> bool:
        """Whether the problem has this job."""
        return job_id in self._job_index

    def vehicle(self, vehicle_id: str) -> Vehicle:
        """The vehicle with this id."""
        for v in self.vehicles:
            if v.vehicle_id == vehicle_id:
                return v
        raise KeyError(vehicle_id)

    def current_routes(self) -> dict[str, tuple[str, ...]]:
        """The vehicles' current sequences."""
        return {v.vehicle_id: v.route for v in self.vehicles}

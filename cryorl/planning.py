"""Collection plans for a session: a policy's ordered targets for the time left, re-made as exposures come in.

:func:`make_plan` (``cryorl.plan``) puts the microscope where the session is — at the start hole (``start``),
after the holes already exposed (``measured``: their names and measured CTFMaxRes, in acquisition order; the
minutes they took come from the cost model) — and rolls the policy out for the rest of the budget on the grid's
predictions: every planned exposure is assumed to come out as predicted, since nothing else is known yet. The
first target is exactly what the policy would do now; the rest is its best guess, to be re-made when the next
exposure is measured (``cryorl plan --watch``). As in the environment, the last target may end past the budget:
a move started before the time is up still counts. Without ``start`` or measured holes the plan begins at the
most probable hole of the grid (by the planner's calibration), listed as its first target. ``predicted_ctf`` is
the predicted CTFMaxRes, or its equivalent for a classifier's probabilities (:mod:`cryorl.quality`).

:meth:`Plan.write` writes ``plan.csv`` and either a SerialEM navigator file (``plan.nav``: one point item per
target in acquisition order, stage coordinates in µm, ``Acquire = 1``) where stage positions are known (a session
folder's ``holes.csv`` with ``stage_x_um``/``stage_y_um``, as ``cryorl simulate`` writes), or ``targets.txt``
(Leginon target names, one per line). Plans are suggestions for an operator to review.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cryorl.atlas import Atlas
from cryorl.costs import SWITCH_LEVELS
from cryorl.env import CryoEMEnv
from cryorl.fileio import atomic_path, atomic_write_text
from cryorl.outputs import clip
from cryorl.quality import predicted_quality

__all__ = ["Plan", "PlanError", "SessionOver", "make_plan", "plan_session", "read_measured", "navigator_text",
           "PLAN_COLUMNS"]

PLAN_COLUMNS = ["order", "hole", "tile", "square", "patch", "x", "y", "stage_x_um", "stage_y_um", "predicted_ctf",
                "probability_good", "switch", "minutes", "cumulative_minutes"]


class PlanError(ValueError):
    """A measured file or a plan request that cannot be planned from; the message names the file and line."""


class SessionOver(PlanError):
    """Nothing is left to plan: the budget is spent or every hole is exposed."""


@dataclass
class Plan:
    """A policy's ordered targets (:data:`PLAN_COLUMNS`, one row per target) for the time left."""

    targets: pd.DataFrame
    agent: str
    budget: float
    elapsed: float
    position: str | None
    measured: int

    @property
    def time_left(self) -> float:
        return self.budget - self.elapsed

    def write(self, folder: str | os.PathLike) -> list[Path]:
        """``plan.csv`` and ``plan.nav`` (stage positions known) or ``targets.txt``, each written atomically. For
        the two to change together, write them into a fresh folder that then replaces the plan folder as a whole
        (:func:`cryorl.outputs.output_folder`, as ``cryorl plan`` does)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "plan.csv") as tmp:
            self.targets.to_csv(tmp, index=False, float_format="%.6g")
        written = [folder / "plan.csv"]
        # the file a microscope or an operator loads last, so it is never older than plan.csv beside it
        if self.targets["stage_x_um"].notna().all() and len(self.targets):
            written.append(atomic_write_text(folder / "plan.nav", navigator_text(self.targets)))
        else:
            names = "".join(f"{name}\n" for name in self.targets["hole"])
            written.append(atomic_write_text(folder / "targets.txt", names))
        return written


def navigator_text(targets: pd.DataFrame) -> str:
    """A SerialEM navigator file (autodoc text): one point item per target, in acquisition order."""
    lines = ["AdocVersion = 2.00", ""]
    for row in targets.itertuples(index=False):
        x, y = float(row.stage_x_um), float(row.stage_y_um)
        lines += [f"[Item = {row.order}]", "Color = 0", f"StageXYZ = {x:.3f} {y:.3f} 0.000", "NumPts = 1",
                  "Regis = 1", "Type = 0", f"Note = {row.hole} ({row.switch} move, "
                  f"{row.cumulative_minutes:g} min)", "Acquire = 1", f"PtsX = {x:.3f}", f"PtsY = {y:.3f}", ""]
    return "\n".join(lines)


def read_measured(path: str | os.PathLike, atlas: Atlas, complete_lines_only: bool = False) -> list[tuple[int, float]]:
    """The holes exposed so far, in file order, with their measured CTFMaxRes: the CryoRL CTF layout (``name, x, y,
    CTFMaxRes, confidence``, no header) or ``hole,ctf`` rows (header optional). An empty file is no exposure yet.
    ``complete_lines_only``: ignore a last line without its newline (a file being appended to)."""
    path = Path(path)
    measured: list[tuple[int, float]] = []
    seen: dict[int, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        bom = "UTF-16 " if path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise PlanError(f"{path}: not UTF-8 text ({bom}byte {error.start}: {error.reason}); save it as UTF-8 "
                        "(plain CSV)") from None
    if complete_lines_only and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    for number, line in enumerate(text.splitlines(), start=1):
        fields = [f.strip() for f in line.split(",")]
        if not line.strip() or (number == 1 and fields[0].lower() in ("hole", "name")):
            continue
        if len(fields) not in (2, 5):
            raise PlanError(f"{path}:{number}: expected 'hole,ctf' or the CryoRL CTF layout (name, x, y, "
                            f"CTFMaxRes, confidence), got {len(fields)} fields")
        name, value = fields[0], fields[1] if len(fields) == 2 else fields[3]
        try:
            hole = atlas.index(name)
        except KeyError:
            raise PlanError(f"{path}:{number}: unknown hole {clip(repr(name))} (not in "
                            f"{atlas.source or 'the grid'})") from None
        try:
            ctf = float(value)
        except ValueError:
            raise PlanError(f"{path}:{number}: CTFMaxRes {clip(repr(value))} of {clip(name)} is not a number") \
                from None
        if not np.isfinite(ctf) or ctf <= 0:
            raise PlanError(f"{path}:{number}: CTFMaxRes {clip(repr(value))} of {name} must be a positive number")
        if hole in seen:
            raise PlanError(f"{path}:{number}: {name} was measured twice (first on line {seen[hole]})")
        seen[hole] = number
        measured.append((hole, ctf))
    return measured


def _hole_index(atlas: Atlas, hole: str | int, what: str) -> int:
    try:
        return atlas.hole_index(hole, what)
    except ValueError as error:
        raise PlanError(str(error)) from None


def _measured_indices(atlas: Atlas, measured) -> list[tuple[int, float]]:
    """``(hole, CTFMaxRes)`` pairs with each hole (a name or an index) as its index; one PlanError naming the
    pair for an unknown hole, a CTFMaxRes that is not a positive number or a hole measured twice."""
    pairs: list[tuple[int, float]] = []
    seen: dict[int, int] = {}
    for number, item in enumerate(measured, start=1):
        try:
            hole, value = item
        except (TypeError, ValueError):
            raise PlanError(f"measured exposure {number}: expected a (hole, CTFMaxRes) pair, got "
                            f"{clip(repr(item))}") from None
        index = _hole_index(atlas, hole, f"measured hole (exposure {number})")
        try:
            ctf = float(value)
        except (TypeError, ValueError):
            ctf = float("nan")
        if not np.isfinite(ctf) or ctf <= 0:
            raise PlanError(f"measured exposure {number}: CTFMaxRes {clip(repr(value))} of {atlas.names[index]} "
                            "must be a positive number")
        if index in seen:
            raise PlanError(f"measured exposure {number}: {atlas.names[index]} was measured twice (first as "
                            f"exposure {seen[index]})")
        seen[index] = number
        pairs.append((index, ctf))
    return pairs


def _best_start(atlas: Atlas, threshold: float) -> int:
    from cryorl.calibration import default_calibration

    p = default_calibration(threshold).probability_good(atlas)
    return int(np.argmax(p))


def make_plan(atlas: Atlas, agent="planner", *, budget: float, costs="cryorl-2023", threshold: float = 6.0,
              start: str | int | None = None, measured: Iterable[tuple[str | int, float]] = (),
              stage: tuple[np.ndarray, np.ndarray] | None = None) -> Plan:
    """The plan of ``agent`` (a name as ``cryorl evaluate --agent`` or a policy object) for ``budget`` minutes
    (module docstring). ``start`` and the holes of ``measured`` (``(hole, CTFMaxRes)`` in acquisition order, as
    :func:`read_measured` returns) are hole names or indices into the hole order; an unknown hole is a
    :class:`PlanError`. ``stage``: stage x, y in µm per hole (:func:`cryorl.stage.read_stage_positions`)."""
    from cryorl.agents import make_policy, policy_entries

    if isinstance(agent, str) and any(e.name == agent and e.needs_truth for e in policy_entries()):
        raise PlanError(f"agent {agent!r} reads the grid's outcomes (a reference, not an agent): a session's plan "
                        "cannot use it; choose planner, greedy-2t or another agent")
    measured = _measured_indices(atlas, measured)
    first = _hole_index(atlas, start, "start hole") if start is not None else None
    policy = make_policy(agent) if isinstance(agent, (str, os.PathLike)) else agent
    truth = predicted_quality(atlas).astype(float)              # planned exposures come out as predicted
    for hole, ctf in measured:
        truth[hole] = ctf
    planned = replace(atlas, true_ctf=truth)
    env = CryoEMEnv(planned, budget=budget, costs=costs, threshold=threshold, invalid_action="raise")
    rows: list[tuple[int, int, float]] = []                     # (hole, switch level or -1 for the start, elapsed)
    if first is not None:
        if any(hole == first for hole, _ in measured):
            raise PlanError(f"the start hole {atlas.names[first]} is also in the measured holes; the start is where "
                            "the microscope was before the first of them")
        exposed = measured
    elif measured:
        first, exposed = measured[0][0], measured[1:]
    else:
        first, exposed = _best_start(atlas, threshold), []
        rows.append((first, -1, 0.0))
    obs, _ = env.reset(options={"start": first, "budget": budget})
    done, taken = False, 1 if start is None and measured else 0
    for hole, _ in exposed:
        if done:
            break
        obs, _, done, _, info = env.step(hole)
        taken += 1
    if done and env.visited.all():
        raise SessionOver(f"every hole of the grid is already exposed ({len(measured)} measured)")
    if done:
        raise SessionOver(f"the budget of {budget:g} min is already spent: the first {taken} of the "
                        f"{len(measured)} measured exposures took {env.elapsed:g} min")
    elapsed_before, position = env.elapsed, str(atlas.names[env.current_hole])
    policy.reset(env)
    while not done:
        hole = policy.act(obs, obs["action_mask"])
        obs, _, done, _, info = env.step(hole)
        rows.append((hole, info["switch_level"], info["elapsed"]))
    return Plan(_table(atlas, rows, elapsed_before, env.costs.as_array(), threshold, stage),
                agent=policy.name, budget=float(budget), elapsed=float(elapsed_before),
                position=None if start is None and not measured else position,
                measured=len(measured))


def _table(atlas: Atlas, rows, elapsed_before: float, costs: np.ndarray, threshold: float, stage) -> pd.DataFrame:
    from cryorl.calibration import default_calibration

    holes = np.array([r[0] for r in rows], dtype=np.int64)
    levels = np.array([r[1] for r in rows], dtype=np.int64)
    cumulative = np.array([r[2] for r in rows], dtype=float)
    p = default_calibration(threshold).probability_good(atlas)
    return pd.DataFrame({
        "order": np.arange(1, len(rows) + 1),
        "hole": atlas.names[holes],
        "tile": np.asarray(atlas.tile_names, dtype=object)[atlas.tile[holes]],
        "square": np.asarray(atlas.square_names, dtype=object)[atlas.square[holes]],
        "patch": np.asarray(atlas.patch_names, dtype=object)[atlas.patch[holes]],
        "x": atlas.x[holes], "y": atlas.y[holes],
        "stage_x_um": stage[0][holes] if stage is not None else np.nan,
        "stage_y_um": stage[1][holes] if stage is not None else np.nan,
        "predicted_ctf": predicted_quality(atlas)[holes],
        "probability_good": p[holes],
        "switch": np.where(levels < 0, "start", np.asarray(SWITCH_LEVELS, dtype=object)[np.maximum(levels, 0)]),
        "minutes": np.where(levels < 0, 0.0, costs[np.maximum(levels, 0)]),
        "cumulative_minutes": cumulative,
    }, columns=PLAN_COLUMNS)


def _plan_line(plan: Plan) -> str:
    where = f"from {plan.position}" if plan.position else "from the most probable hole"
    return (f"{plan.agent}: {len(plan.targets)} targets {where}, {plan.time_left:g} of {plan.budget:g} min left "
            f"after {plan.measured} measured exposures")


def plan_session(data: str | os.PathLike, out: str | os.PathLike, *, budget: float, agent: str = "planner",
                 ctf: str | os.PathLike | None = None, split: str | None = None, era: str | None = None,
                 costs: str = "cryorl-2023", threshold: float = 6.0, start: str | None = None,
                 measured: str | os.PathLike | None = None, watch: bool = False, interval: float = 2.0,
                 overwrite: bool = False, echo: Callable[[str], None] = print) -> Plan:
    """``cryorl plan``: ``agent``'s plan for the session ``data`` (any grid :func:`~cryorl.formats.load_grid`
    opens) after the exposures in the file ``measured``, written into the folder ``out`` (:meth:`Plan.write`;
    replaced as a whole only with ``overwrite``). With ``watch``, re-plans whenever ``measured`` changes (checked
    every ``interval`` seconds) until the session is over. Each plan is described by a line to ``echo``; returns
    the last plan."""
    from cryorl.agents.registry import agent_paths
    from cryorl.formats import open_grid
    from cryorl.outputs import check_output_folder, output_folder, reserve_output

    out, measured = Path(out), (Path(measured) if measured is not None else None)
    inputs = [data, ctf, *agent_paths([agent])] + ([measured] if measured else [])
    check_output_folder(out, overwrite=overwrite, what="plan", inputs=inputs)
    if watch and measured is None:
        raise ValueError("--watch needs --measured FILE (the file the session appends its exposures to)")
    grid = open_grid(data, split, era=era, ctf=ctf)

    def planned(complete_lines_only: bool) -> Plan:
        exposed = []
        if measured is not None and measured.exists():
            exposed = read_measured(measured, grid.atlas, complete_lines_only=complete_lines_only)
        elif measured is not None and not watch:
            raise FileNotFoundError(f"{measured}: no such measured file")
        return make_plan(grid.atlas, agent, budget=budget, costs=costs, threshold=threshold, start=start,
                         measured=exposed, stage=grid.stage)

    plan = planned(complete_lines_only=watch)
    # --watch holds --out for the whole session; each plan replaces --out as a whole (its plan.csv and plan.nav
    # change together), a re-plan only while --out holds just the files the last plan wrote
    reservation = reserve_output(out, what="plan") if watch else None
    try:
        with output_folder(out, overwrite=overwrite, what="plan", inputs=inputs) as folder:
            written = plan.write(folder)
        echo(_plan_line(plan))
        echo("wrote " + ", ".join(str(out / path.name) for path in written))
        if watch:
            plan = _watch(planned, measured, out, inputs, [path.name for path in written], interval, echo) or plan
        return plan
    finally:
        if reservation is not None:
            reservation.release()


def _watch(planned: Callable[[bool], Plan], measured: Path, out: Path, inputs: list, written: list[str],
           interval: float, echo: Callable[[str], None]) -> Plan | None:
    """Re-plan whenever ``measured`` changes, replacing the files ``written`` in ``out``, until the session is
    over; returns the last plan made (None when there was none)."""
    from cryorl.outputs import output_folder

    last, plan = None, None
    while True:
        stat = measured.stat() if measured.exists() else None
        state = (stat.st_size, stat.st_mtime_ns) if stat else None
        if state != last:
            last = state
            try:
                plan = planned(True)
            except SessionOver as error:
                echo(f"session over: {error}")
                return plan
            with output_folder(out, overwrite=True, what="plan", inputs=inputs, only=written) as folder:
                written = [path.name for path in plan.write(folder)]
            echo(_plan_line(plan))
        time.sleep(interval)

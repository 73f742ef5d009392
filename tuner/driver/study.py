"""The Optuna side: the study, its sampler and constraint, and the space as distributions.

What the rest of the tuner needs to know about a finished trial lives in its user attributes
(metrics, status, reason, MLflow run id), so the storage alone can rebuild every report.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import metrics as mx
from tuner.driver.space import Space
from tuner.driver.strategy import SWEEP, Measured, next_sweep_configs
from tuner.errors import UserError
from tuner.knobs import REGISTRY
from tuner.trial import OK, OOM, PRUNED, UNSUPPORTED

# user attribute names
ROLE = "role"  # "baseline" for the reference trial
STATUS = "status"
REASON = "reason"
CONSTRAINT = mx.GUARD_VIOLATION  # user attr, and the Optuna constraint name
MLFLOW_RUN_ID = "mlflow_run_id"
METRICS = "metrics"
DUPLICATE_OF = "duplicate_of"
SKIPPED = "skipped"  # a config known not to run here, never started: not counted in the budget
KNOBS = "knobs"
BASELINE = "baseline"
CONFIRM = "confirm"  # role: a fresh measurement of one of the best configs, at the budget's end
CONFIRMS = "confirms"  # user attr of a confirming trial: the trial it re-measures
CHAMPION = "champion"  # role: last night's champion, re-measured tonight (tuner nightly)
SENTINEL = "sentinel"  # role: the baseline config measured again, to see the machine drift
REMEASURE = "remeasure"  # role: a config measured again, its first run was in a drifted window
REMEASURES = "remeasures"  # user attr of a remeasure trial: the trial it measures again
PAIR = "pair"  # user attr of a confirming trial: "PASS:ROUND", its round of the paired confirmation
STEP_TIMES = "step_times_s"
GUARD_LOSSES = "guard_losses"
INFO = "info"  # where and how it ran: node, host, env set, versions, note
LOG = "log"  # a trial that did not end ok: its traceback and the tail of its output

# study user attributes
GUARD_REFERENCE = "guard_reference"
GUARD_CACHE = "guard_cache"  # numerics key -> guard loss
SPACE_SOURCE = "space_source"
OBJECTIVE = "objective"  # the one tables rank by
OBJECTIVES = "objectives"  # all of them, in the study's order of values
MAX_CV = "max_cv"
CURRENCY = "currency"
WORKLOAD = "workload"
UNSUPPORTED_CHOICES = "unsupported_choices"  # "knob=value" -> reason, learnt from trials
DRIFT = "drift"  # {trial number: the sentinel's ratio}: sentinels, and trials in a drifted window
HEADROOM = "headroom"  # {"flops_per_sample": F, "roofs": {device: {dtype: FLOP/s}}}
MEMORY_LIMITS = "memory_limits"  # numerics key -> [smallest batch that ran out of memory, trial]
TRY_FIRST_DONE = "try_first_enqueued"
CONFIRM_DONE = "confirmations_enqueued"
BASELINE_LIMIT = "baseline_time_limit_s"  # study attr: the baseline ran out of time once
RUN_AGAIN = "run_again_with_limit_s"  # trial attr: a baseline that ran out of time, run again


def make_sampler(space: Space, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The space's sampler. Its seed moves on with the study's trial count: a resumed search
    with the seed it started with would replay the first search's draws, config for config."""
    seed = None if space.sampler.seed is None else space.sampler.seed + trials_so_far
    if space.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Constraints come from Trial.set_constraint (the guard); TPE reads them itself.
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=space.sampler.startup_trials,
            multivariate=True,
            group=True,  # conditional knobs (compile_mode) form their own group
            # trials side by side: a running trial counts as a poor result meanwhile, so the
            # next proposal goes elsewhere instead of next to it
            constant_liar=space.trial.max_concurrent > 1,
        )


def open_study(space: Space, storage: str | optuna.storages.BaseStorage,
               study_name: str) -> optuna.Study:
    """Create the study, or load it to resume; the sampler is rebuilt from the space."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage, study_name=study_name, sampler=make_sampler(space),
        directions=mx.directions(space.objectives), load_if_exists=True,
    )
    before = study.user_attrs.get(OBJECTIVES) or (
        [study.user_attrs[OBJECTIVE]] if OBJECTIVE in study.user_attrs else list(space.objectives))
    if list(before) != list(space.objectives) or len(study.directions) != len(space.objectives):
        raise UserError(f"objective: study {study_name} holds trials measured for "
                        f"{' and '.join(before)}, the space asks for "
                        f"{' and '.join(space.objectives)}; a study keeps its objectives: give "
                        "this search another study name (--study NAME)")
    done = len(study.get_trials(deepcopy=False))
    if done:
        study.sampler = make_sampler(space, done)
    with warnings.catch_warnings():  # experimental since Optuna 3.2, still so in 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(space.objectives))  # optuna-dashboard's names for values
    study.set_user_attr(SPACE_SOURCE, space.source)
    study.set_user_attr(OBJECTIVE, space.objective)
    study.set_user_attr(OBJECTIVES, list(space.objectives))
    study.set_user_attr(MAX_CV, space.max_cv)
    study.set_user_attr(CURRENCY, space.cost.currency)
    workload = space.workload
    study.set_user_attr(WORKLOAD, {"name": workload.name, "options": workload.options,
                                   **({"job": workload.job, "args": workload.args,
                                       "scenario": workload.scenario} if workload.job else {})})
    return study


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Sample the trial's knobs define-by-run, so a conditional knob is only asked when active."""
    sampled: dict[str, Any] = {}
    for name, knob in space.knobs.items():
        if not REGISTRY[name].is_active({**space.baseline, **sampled}):
            continue
        if knob.choices is not None:
            sampled[name] = trial.suggest_categorical(name, list(knob.choices))
        else:
            r = knob.int_range
            assert r is not None
            sampled[name] = trial.suggest_int(name, r.low, r.high, step=1 if r.log else r.step,
                                              log=r.log)
    return space.full_config(sampled)


def enqueue_baseline(study: optuna.Study, space: Space, role: str = BASELINE) -> None:
    """The baseline config: as the baseline, or again as a drift sentinel."""
    study.enqueue_trial(space.searched(space.full_config({})), user_attrs={ROLE: role})


def enqueue_first(study: optuna.Study, space: Space, configs: list[tuple[dict[str, Any], str]],
                  done_attr: str) -> int:
    """Queue (config, role) pairs once per study (`done_attr` remembers it), right after the
    baseline: each config partial, filled in from the baseline."""
    if not configs or study.user_attrs.get(done_attr):
        return 0

    def waiting() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    before = waiting()
    for config, role in configs:
        study.enqueue_trial(space.searched(space.full_config(config)), user_attrs={ROLE: role},
                            skip_if_exists=True)
    study.set_user_attr(done_attr, True)
    return waiting() - before  # a config already queued or measured is not queued twice


def enqueue_try_first(study: optuna.Study, space: Space) -> int:
    """Queue the space's try_first configs once per study, after the baseline."""
    return enqueue_first(study, space, [(config, "try_first") for config in space.try_first],
                         TRY_FIRST_DONE)


def enqueue_sweep(study: optuna.Study, space: Space) -> int:
    """Queue the sweep's next config (tuner/strategy.py) when nothing else waits: one at a
    time, so a search that stops leaves nothing queued (the next one picks the sweep up from
    what was measured; trials side by side each queue their own); 0 when it waits for running
    trials or is done (then the sampler proposes)."""
    if space.sampler.start != SWEEP or study.get_trials(deepcopy=False,
                                                       states=(TrialState.WAITING,)):
        return 0
    configs = (next_sweep_configs(space, *_sweep_history(study, space)) or [])[:1]
    for config in configs:
        study.enqueue_trial(space.searched(config), user_attrs={ROLE: SWEEP}, skip_if_exists=True)
    return len(configs)


def sweep_done(study: optuna.Study, space: Space) -> bool:
    return next_sweep_configs(space, *_sweep_history(study, space)) is None


def _sweep_history(study: optuna.Study,
                   space: Space) -> tuple[list[Measured], list[dict[str, Any]]]:
    """Finished trials as the sweep sees them, and the configs still running."""
    measured, pending = [], []
    for trial in study.get_trials(deepcopy=False):
        knobs = space.full_config(trial.params)
        if trial.state == TrialState.RUNNING:
            pending.append(knobs)
        elif trial.state.is_finished() and trial.user_attrs.get(ROLE) != SENTINEL:
            measured.append(Measured(knobs, sweep_value(trial, space.objective),
                                     trial.user_attrs.get(ROLE, "candidate")))
    return measured, pending


def sweep_value(trial: FrozenTrial, objective: str = mx.SAMPLES_PER_SEC) -> float | None:
    """The sweep's score of a complete trial within the guard: its first objective's value,
    signed so that higher is better whatever the objective's direction."""
    if trial.state != TrialState.COMPLETE or not trial.values:
        return None
    if float(trial.user_attrs.get(CONSTRAINT, 0.0)) > 0:
        return None
    if trial.user_attrs.get(METRICS, {}).get(mx.NOISY):
        return None  # never reported best, so never the config the sweep builds on
    return -mx.sort_key(objective) * float(trial.values[0])


def recorded_status(trial: FrozenTrial) -> str | None:
    """The trial's status attr, or None where it does not describe how the trial ended: a FAIL
    trial holding a status the tuner never tells as FAIL (ok, unsupported, oom) was killed between
    recording its result and its tell, then failed by the stale-trial check: interrupted."""
    status = trial.user_attrs.get(STATUS)
    if trial.state == TrialState.FAIL and status in (OK, UNSUPPORTED, OOM, PRUNED):
        return None
    return status


def known_unsupported(study: optuna.Study, knobs: dict[str, Any]) -> str | None:
    """The reason an earlier trial gave for a choice this config also makes, if any."""
    learnt = study.user_attrs.get(UNSUPPORTED_CHOICES, {})
    made = {f"{name}={value}" for name, value in knobs.items()}
    for key, reason in learnt.items():  # a key is one choice, or a combination joined by " + "
        if set(key.split(" + ")) <= made:
            return reason
    return None


def remember_unsupported(study: optuna.Study, choice: dict[str, Any], reason: str) -> None:
    """`choice`: one knob's value, or several that only fail together (then only configs
    making all of them are skipped)."""
    learnt = dict(study.user_attrs.get(UNSUPPORTED_CHOICES, {}))
    learnt[" + ".join(f"{name}={value}" for name, value in sorted(choice.items()))] = reason
    study.set_user_attr(UNSUPPORTED_CHOICES, learnt)


def remember_drift(study: optuna.Study, ratios: dict[int, float]) -> None:
    """Sentinels' ratios and the trials of a drifted window (finished trials take no new
    attributes: the study holds them)."""
    study.set_user_attr(DRIFT, {**study.user_attrs.get(DRIFT, {}),
                                **{str(number): ratio for number, ratio in ratios.items()}})


def headroom_missing(study: optuna.Study, knobs: dict[str, Any]) -> bool:
    """No matmul roof for this config's device yet (or no FLOP count): its trial measures."""
    figures = study.user_attrs.get(HEADROOM, {})
    return "flops_per_sample" not in figures or device_kind(knobs) not in figures.get("roofs", {})


def device_kind(knobs: dict[str, Any]) -> str:
    """"cuda" or "cpu": the kind of device a config runs on (a roof is measured per kind)."""
    return "cuda" if str(knobs.get("device", "cpu")).startswith("cuda") else "cpu"


def remember_headroom(study: optuna.Study, measured: dict[str, Any]) -> None:
    """A trial's FLOP count and its device's matmul roofs (tuner.worker.headroom)."""
    figures = dict(study.user_attrs.get(HEADROOM, {}))
    figures.setdefault("flops_per_sample", measured["flops_per_sample"])
    figures["roofs"] = {**figures.get("roofs", {}), measured["device"]: measured["roofs"]}
    study.set_user_attr(HEADROOM, figures)


def remember_out_of_memory(study: optuna.Study, knobs: dict[str, Any], trial_number: int) -> None:
    """A batch size that ran out of memory: the same config at this batch size or larger will
    too, so those are skipped from now on. Only those: any other knob (loader workers and
    prefetch, the allocator, the layout, compile) changes memory as well."""
    batch = knobs.get("batch_size")
    if not isinstance(batch, int):
        return
    limits = dict(study.user_attrs.get(MEMORY_LIMITS, {}))
    key = _memory_key(knobs)
    if key not in limits or batch < limits[key][0]:
        limits[key] = [batch, trial_number]
        study.set_user_attr(MEMORY_LIMITS, limits)


def known_out_of_memory(study: optuna.Study, knobs: dict[str, Any]) -> str | None:
    """Why this config would run out of memory, judging by an earlier trial, or None."""
    batch = knobs.get("batch_size")
    limit = study.user_attrs.get(MEMORY_LIMITS, {}).get(_memory_key(knobs))
    if limit is None or not isinstance(batch, int) or batch < limit[0]:
        return None
    return (f"batch_size={batch}: batch {limit[0]} already ran out of memory with the rest of "
            f"the config the same (trial {limit[1]})")


def _memory_key(knobs: dict[str, Any]) -> str:
    """A config less its batch size: configs that differ in the batch alone share it."""
    return json.dumps({name: value for name, value in knobs.items() if name != "batch_size"},
                      sort_keys=True, default=str)


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(ROLE) == BASELINE and trial.state == TrialState.COMPLETE:
            return trial
    return None


def baseline_queued(study: optuna.Study) -> bool:
    """True when a baseline waits in the queue (a RUNNING one may be left over from a killed
    search and will never be handed out again, so it does not count)."""
    return any(
        trial.user_attrs.get(ROLE) == BASELINE
        for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    )


def baseline_running(study: optuna.Study) -> bool:
    """True while a baseline trial is RUNNING: ours, another live search's, or a dead search's
    (which the stale-trial check fails and re-queues within a grace period)."""
    return any(
        trial.user_attrs.get(ROLE) == BASELINE
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def guard_cache(study: optuna.Study) -> dict[str, float]:
    return json.loads(study.user_attrs.get(GUARD_CACHE, "{}"))


def remember_guard(study: optuna.Study, key: str, loss: float) -> None:
    cache = guard_cache(study)
    cache[key] = loss
    study.set_user_attr(GUARD_CACHE, json.dumps(cache, sort_keys=True))


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def same_config_trial(study: optuna.Study, knobs: dict[str, Any],
                      exclude: int) -> FrozenTrial | None:
    """A completed trial with exactly these knob values: re-measuring it would waste the budget."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.number != exclude and trial.user_attrs.get(KNOBS) == knobs:
            return trial
    return None

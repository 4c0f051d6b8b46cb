"""What a pipeline run did, read back from MLMD: per stage, ran or cached, outputs and numbers."""
import dataclasses

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

STATE_NAMES = {metadata_store_pb2.Execution.COMPLETE: "ran",
               metadata_store_pb2.Execution.CACHED: "cached",
               metadata_store_pb2.Execution.FAILED: "FAILED",
               metadata_store_pb2.Execution.RUNNING: "running"}
MAX_NUMBERS = 6
# String custom properties worth a line of their own: the Evaluator's gallery, I3D weights and
# protocol, per-task FVD / PSNR of generated content next to their baselines, blessing, warning.
NOTES = ("gallery", "i3d", "tasks", "verdict", "warning")
TFX_PROPERTIES = ("is_external",)           # set by TFX on every artifact: not a result


@dataclasses.dataclass
class StageRecord:
    stage: str
    state: str
    outputs: dict[str, str]                  # output key -> artifact URI
    numbers: dict[str, float]                # numeric custom properties of the outputs
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # NOTES of the outputs


def open_store(metadata_path: str) -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


def last_run(store: mlmd.MetadataStore, pipeline_name: str,
             run_id: str | None = None) -> list[StageRecord]:
    """The stages of run `run_id` of the pipeline (default: its latest run), in execution order."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        raise ValueError(f"no pipeline {pipeline_name!r} in this MLMD store")
    runs = [c for c in store.get_children_contexts_by_context(pipeline.id)
            if c.type == "pipeline_run"] or store.get_contexts_by_type("pipeline_run")
    if run_id is not None:
        runs = [c for c in runs if c.name == run_id]
        if not runs:
            raise ValueError(f"no run {run_id!r} of pipeline {pipeline_name!r} in this MLMD store")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    records = []
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = next(c.name for c in store.get_contexts_by_execution(execution.id)
                    if c.type == "node")
        outputs, numbers, notes = {}, {}, {}
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT,
                                metadata_store_pb2.Event.DECLARED_OUTPUT)]
        by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            artifact = by_id[event.artifact_id]
            key = event.path.steps[0].key if event.path.steps else str(artifact.id)
            outputs[key] = artifact.uri
            for name, value in artifact.custom_properties.items():
                if name in TFX_PROPERTIES:
                    continue
                if value.HasField("double_value") or value.HasField("int_value"):
                    numbers[f"{key}/{name}"] = (value.double_value if value.HasField("double_value")
                                                else value.int_value)
                elif name in NOTES and value.HasField("string_value"):
                    notes[name] = value.string_value
        records.append(StageRecord(stage=node.split(".", 1)[-1],
                                   state=STATE_NAMES.get(execution.last_known_state, "unknown"),
                                   outputs=outputs, numbers=numbers, notes=notes))
    return records


def summarize(metadata_path: str, pipeline_name: str, run_id: str | None = None) -> str:
    """A one-screen text summary of run `run_id` of the pipeline (default: its latest run)."""
    records = last_run(open_store(metadata_path), pipeline_name, run_id)
    lines = [f"== {pipeline_name}{f' run {run_id}' if run_id else ''}: {len(records)} stage(s), "
             f"{sum(r.state == 'ran' for r in records)} ran, "
             f"{sum(r.state == 'cached' for r in records)} from cache =="]
    for record in records:
        lines.append(f"{record.stage:<20} {record.state}")
        for key, uri in sorted(record.outputs.items()):
            lines.append(f"    {key:<16} {uri}")
        # Top-level numbers (fvd) before nested ones (<task>/fvd, <split>/clips).
        shown = sorted(record.numbers.items(), key=lambda kv: (kv[0].count("/"), kv[0]))
        if shown:
            lines.append("    " + ", ".join(f"{k.split('/', 1)[-1]}={v:.4g}"
                                            for k, v in shown[:MAX_NUMBERS]))
        for name in NOTES:
            if name in record.notes:
                label = name.upper() if name == "warning" else name
                first, *rest = record.notes[name].split("\n")
                lines.append(f"    {label}: {first}")
                lines.extend(f"      {line}" for line in rest)
    lines.append(f"MLMD store: {metadata_path}")
    return "\n".join(lines)

"""Machine requests of the compiled Kubeflow / Vertex AI pipeline: accelerators, CPU and memory.

`resource_spec` builds the KFP `ResourceSpec` that TFX's Kubeflow V2 compiler copies from a
component's `platform_config` into `deploymentSpec.executors.<step>.container.resources`. Both the
numeric fields that Vertex AI reads (`cpu_limit`, `memory_limit` in GB, `accelerator.type/count`)
and the string fields that current KFP writes (`resource_cpu_limit`, ...) are set.
"""
import dataclasses
import json

from kfp.pipeline_spec import pipeline_spec_pb2

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec

# Vertex AI machine accelerator types (aiplatform AcceleratorType names).
GPU_TYPES = ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_P4",
             "NVIDIA_L4", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_H100_80GB",
             "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB", "NVIDIA_B200")
TPU_TYPES = ("TPU_V2", "TPU_V3", "TPU_V4_POD", "TPU_V5_LITEPOD", "TPU_V6E")
ACCELERATOR_TYPES = GPU_TYPES + TPU_TYPES


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one step asks for; empty / 0 fields are left to the platform's default machine."""
    accelerator: str = ""
    accelerator_count: int = 0
    cpu_limit: float = 0.0
    memory_limit_gb: float = 0.0

    def __post_init__(self):
        if self.accelerator and self.accelerator not in ACCELERATOR_TYPES:
            raise ValueError(f"--accelerator={self.accelerator}: not a Vertex AI accelerator type; "
                             f"expected one of {', '.join(ACCELERATOR_TYPES)}")
        if self.accelerator and self.accelerator_count < 1:
            raise ValueError(f"--accelerator_count={self.accelerator_count}: must be >= 1 with "
                             f"--accelerator={self.accelerator}")
        if self.accelerator_count and not self.accelerator:
            raise ValueError(f"--accelerator_count={self.accelerator_count} needs --accelerator")
        for flag, value in (("--cpu_limit", self.cpu_limit),
                            ("--memory_limit", self.memory_limit_gb)):
            if value < 0:
                raise ValueError(f"{flag}={value:g}: must be >= 0")

    def __bool__(self) -> bool:
        return bool(self.accelerator or self.cpu_limit or self.memory_limit_gb)


def parse_memory_gb(text: str) -> float:
    """'64G' / '64GB' / '64' (GB) / '512M' -> GB; '' -> 0."""
    value = text.strip().upper().removesuffix("B")
    if not value:
        return 0.0
    scale = {"G": 1.0, "M": 1 / 1024, "T": 1024.0}.get(value[-1])
    try:
        return float(value[:-1]) * scale if scale else float(value)
    except ValueError:
        raise ValueError(f"--memory_limit={text}: expected a size such as 64G or 512M") from None


def resource_spec(resources: Resources) -> ResourceSpec:
    spec = ResourceSpec()
    if resources.cpu_limit:
        spec.cpu_limit = resources.cpu_limit
        spec.resource_cpu_limit = f"{resources.cpu_limit:g}"
    if resources.memory_limit_gb:
        spec.memory_limit = resources.memory_limit_gb
        spec.resource_memory_limit = f"{resources.memory_limit_gb:g}G"
    if resources.accelerator:
        spec.accelerator.type = resources.accelerator
        spec.accelerator.count = resources.accelerator_count
        spec.accelerator.resource_type = resources.accelerator
        spec.accelerator.resource_count = str(resources.accelerator_count)
    return spec


@dataclasses.dataclass(frozen=True)
class TrainerPools:
    """Multi-host training (`--trainer_replicas` > 1): each trainer step launches a Vertex AI
    CustomJob of `replicas` machines (`machine_type`, each with the steps' accelerators) running
    `image`, in `project` / `region` ('': from the step's environment, `components.custom_job`)."""
    replicas: int = 1
    machine_type: str = ""
    image: str = ""
    project: str = ""
    region: str = ""
    accelerator: str = ""
    accelerator_count: int = 0

    def __post_init__(self):
        if self.replicas < 1:
            raise ValueError(f"--trainer_replicas={self.replicas}: must be >= 1")
        if self.replicas == 1:
            given = [f for f in ("machine_type", "project", "region") if getattr(self, f)]
            if given:
                raise ValueError(f"--trainer_{given[0]}={getattr(self, given[0])} sets up the "
                                 "multi-host CustomJob of the trainers: it needs "
                                 "--trainer_replicas > 1")
            return
        if not self.machine_type:
            raise ValueError(f"--trainer_replicas={self.replicas} needs --trainer_machine_type, "
                             "the Vertex AI machine of each replica (e.g. a3-highgpu-8g for 8 "
                             "H100, a2-highgpu-8g for 8 A100, ct5lp-hightpu-4t for TPU v5e)")
        if not self.region:
            raise ValueError(f"--trainer_replicas={self.replicas} needs --trainer_region, the "
                             "Vertex AI region of the trainers' CustomJob (e.g. us-central1)")
        if "/" not in self.image:
            raise ValueError(f"--image={self.image}: --trainer_replicas={self.replicas} runs "
                             "the trainers' CustomJob in this image, so it must be one Vertex AI "
                             "can pull (REGION-docker.pkg.dev/PROJECT/REPO/magvit:TAG)")

    def __bool__(self) -> bool:
        return self.replicas > 1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True) if self else ""

    @classmethod
    def from_json(cls, text: str) -> "TrainerPools":
        return cls(**json.loads(text)) if text else cls()


def worker_pool_specs(pools: TrainerPools, module: str, args: list[str]) -> list[dict]:
    """The CustomJob's worker pools: workerpool0 (1 replica, the jax.distributed coordinator)
    and workerpool1 (the other replicas), identical machines running `python -m module args`."""
    machine = {"machine_type": pools.machine_type}
    if pools.accelerator:
        machine.update(accelerator_type=pools.accelerator,
                       accelerator_count=pools.accelerator_count)
    return [{"machine_spec": dict(machine), "replica_count": count,
             "container_spec": {"image_uri": pools.image, "command": ["python", "-m", module],
                                "args": list(args)}}
            for count in (1, pools.replicas - 1)]

"""The `transformer` section: MAGVIT's bidirectional transformer and COMMIT training."""
import ml_collections

_SIZES = {
    #       layers hidden mlp  heads
    "B": (12, 768, 3072, 12),
    "L": (24, 1024, 4096, 16),
    "tiny": (2, 128, 256, 4),   # demo: (2, 64, 128, 2) predicted 20.7 dB against 22.9
}
# The official task lists (shared/research/magvit_spec.md).
BAIR_TASKS = ("frame_prediction", "frame_interpolation", "outpainting_h", "outpainting_v",
              "outpainting_c", "outpainting_dv", "inpainting_c", "inpainting_dv")
SSV2_TASKS = BAIR_TASKS + ("class_conditional", "class_conditional_frame_prediction")


def transformer_config(size: str, tasks=("frame_prediction",), condition_frames: int = 1):
    if size not in _SIZES:
        raise ValueError(f"unknown transformer size {size!r}; expected one of {', '.join(_SIZES)}")
    layers, hidden, mlp, heads = _SIZES[size]
    tiny = size == "tiny"
    return ml_collections.ConfigDict(dict(
        model=dict(
            num_layers=layers,
            hidden_size=hidden,
            mlp_dim=mlp,
            num_heads=heads,
            dropout_rate=0.1,
            attention_dropout_rate=0.1,
            use_condition_segment=False,  # official default: no segment embeddings; True adds
                                          # two (1 = condition token), as this project once did
        ),
        # Compute dtype of the layers: float32 | bfloat16 (parameters, optimiser state, norms,
        # embeddings and logits stay float32; magvit/precision.py). README's table recommends
        # bfloat16 on GPU / TPU.
        dtype="float32",
        remat=False,                  # recompute each layer in the backward pass (memory)
        # jax.nn.dot_product_attention implementation: auto (cuDNN flash attention on a GPU in
        # bfloat16, else XLA) | xla | cudnn. Training with attention_dropout_rate > 0 (official:
        # 0.1) computes attention unfused, as the fused kernels have no dropout.
        attention="auto",
        tasks=tuple(tasks),              # more than one: a multi-task model (task tokens)
        condition_frames=condition_frames,  # frame prediction: 1 (BAIR), 5 (Kinetics-600)
        # Token frames of the frame-prediction condition region; 0 = ceil(condition_frames * t / T),
        # every condition frame inside it (Kinetics-600: 5 of 16 frames -> 2 of 4 token frames,
        # the paper's 5-frame condition; the official code's `cond_latent_frames` default is 1).
        condition_latent_frames=0,
        task_sampling="per_step",        # official: one task per step for the whole batch, from a
                                         # seeded permutation; per_example: one per example
        mask_ratio_sampling="per_batch",  # official: one mask ratio per step; or per_example
        loss_mode="mask+refine+recons",
        mask_weight=1.0,
        refine_weight=1.0,
        recons_weight=1.0,
        label_smoothing=1e-4,
        mask_schedule="cosine",
        optimizer=dict(
            learning_rate=1e-4 if not tiny else 1e-3,
            b1=0.9,
            b2=0.96,
            weight_decay=0.045,
            warmup_steps=5000 if not tiny else 20,
            grad_clip_norm=1.0,
        ),
        training=dict(
            batch_size=256 if not tiny else 8,
            num_train_steps=1_000_000 if not tiny else 300,
            log_every_steps=100 if not tiny else 10,
            checkpoint_every_steps=5000 if not tiny else 100,
            max_checkpoints_to_keep=3,
            shuffle_buffer=4096 if not tiny else 64,
            # Condition tokens built with the tokenizer (records without `condition/<task>`)
            # are cached per (task, clip): at most this many grids in memory.
            condition_cache_size=100_000,
        ),
        decoding=dict(
            num_steps=12,
            choice_temperature=4.5,
            mask_schedule="cosine",
            paste_condition=False,    # official: off; True pastes the known condition pixels
                                      # into the output (FVD then not comparable to the paper)
            condition_mode="refine",  # official: condition positions re-predicted; "fixed": held
            temperature=1.0,          # sampling temperature of the token draws
            top_k=0,                  # > 0: sample among the k most likely tokens
            top_p=0.0,                # > 0: nucleus sampling (at most one of top_k / top_p)
            guidance_scale=0.0,       # classifier-free guidance: l + s * (l - l_uncond); 0 = off
        ),
    ))

"""The `tokenizer` section: MAGVIT's 3D-VQ (official configs, shared/research/magvit_spec.md)."""
import ml_collections

_SIZES = {"B": 64, "L": 128, "tiny": 16}


def tokenizer_config(size: str, resolution: int, num_frames: int = 16) -> ml_collections.ConfigDict:
    if size not in _SIZES:
        raise ValueError(f"unknown tokenizer size {size!r}; expected one of {', '.join(_SIZES)}")
    tiny = size == "tiny"
    # 128x128 -> 16x16 takes three 2x spatial downsamplings (four levels); 64x64 -> 16x16 two.
    if tiny:
        multipliers = (1, 2, 4)
    else:
        multipliers = (1, 2, 2, 4) if resolution >= 128 else (1, 2, 4)
    disc_multipliers = (2, 4, 4, 4, 4) if resolution >= 128 else (2, 4, 4, 4)
    if tiny:
        disc_multipliers = (2, 4, 4)
    return ml_collections.ConfigDict(dict(
        clip_shape=(num_frames, resolution, resolution),   # (T, H, W) fed to the tokenizer
        # Compute dtype of the VQ model's convolutions: float32 | bfloat16 (parameters, optimiser
        # state, norms, quantizer and losses stay float32; magvit/precision.py). README's table
        # recommends bfloat16 on GPU / TPU.
        dtype="float32",
        remat=False,                  # recompute residual blocks in the backward pass (memory)
        model=dict(
            filters=_SIZES[size],
            channel_multipliers=multipliers,
            num_res_blocks=2 if not tiny else 1,
            # Pixels per side of the square patch the encoder's first layer sees as one position
            # (space-to-depth; the decoder ends with the inverse). 1 = official (full-resolution
            # first level); 2 quarters the first level's cost (README, "Differences").
            patch_size=1,
            # temporal downsampling at the first two downsampling stages only: 16 -> 4 frames
            temporal_downsample=tuple(i < 2 for i in range(len(multipliers) - 1)),
            num_groups=8 if tiny else 32,
            embedding_dim=16 if tiny else 256,
            codebook_size=64 if tiny else 1024,
            quantizer="vq",           # vq | lfq (MAGVIT-v2 lookup-free quantizer)
            lfq_bits=10,              # LFQ: 2**bits codes
            lfq_entropy_weight=0.1,
            lfq_commitment_cost=0.25,
            commitment_cost=0.25,
            entropy_loss_ratio=0.1,
            entropy_temperature=0.01,
            entropy_loss_type="softmax",
            spatial_dims=3,           # 3: the video 3D-VQ; 2: the image VQGAN (`*_image` settings)
                                      # trained first, then inflated (official 2D->3D path)
            inflation="central",      # 2D->3D: central | average
            init_from_2d="",          # a 2D tokenizer work directory (generator, EMA and
                                      # discriminator inflated), or a msgpack file of 2D
                                      # generator params; "" = random initialisation
        ),
        discriminator=dict(
            filters=_SIZES[size],
            channel_multipliers=disc_multipliers,
        ),
        loss=dict(
            reconstruction_weight=1.0,    # official (vqgan_trainer.py): L2 weight 1
            # Perceptual loss: squared distance of ImageNet ResNet-50 logits of real and
            # reconstructed frames (magvit/tokenizer/perceptual.py). On only when
            # perceptual_weights names a LOCAL Keras-2-format HDF5 file,
            # resnet50_weights_tf_dim_ordering_tf_kernels.h5 (the one
            # tf.keras.applications.ResNet50(weights="imagenet") caches in ~/.keras/models/,
            # md5 2cb95161c43110f7111970584f804107); empty = off (never faked).
            perceptual_weight=0.1,
            perceptual_weights="",
            perceptual_resolution=224,    # frames are resized (bilinear) to this square size
            generator_adversarial_weight=0.1,
            discriminator_adversarial_weight=1.0,
            # R1 penalty on real clips: r1_gamma * E||grad_x D(x)||^2 (official, no 1/2);
            # r1_convention="stylegan" halves it (gamma / 2, as StyleGAN).
            r1_gamma=10.0,
            r1_convention="official",
            # LeCam: off in every released config (weight 0). "batch_mean" (official) penalises
            # the batch-mean logits; "per_sample" applies the ReLU to each logit before the mean.
            lecam_weight=0.0,
            lecam_mode="batch_mean",
            lecam_ema_decay=0.999,
            gan_start_step=0 if not tiny else 10_000,   # tiny: pure VQ on CPU
        ),
        optimizer=dict(
            learning_rate=1e-4 if not tiny else 1e-3,
            b1=0.0,
            b2=0.99,
            warmup_steps=1000 if not tiny else 20,
            weight_decay=0.0,
            ema_decay=0.999 if not tiny else 0.99,
        ),
        training=dict(
            batch_size=128 if size == "B" else (256 if size == "L" else 4),
            num_train_steps=500_000 if not tiny else 300,
            log_every_steps=100 if not tiny else 10,
            checkpoint_every_steps=5000 if not tiny else 100,
            max_checkpoints_to_keep=3,
            eval_batches=8 if not tiny else 2,
            shuffle_buffer=4096 if not tiny else 64,
            random_flip=True,         # left-right flip augmentation (uses the state's RNG)
            frames_per_clip=1,        # 2D tokenizer: random frames taken from each clip
            # 2D tokenizer: train on the png / jpeg images under this folder (nested folders,
            # gs:// too) instead of clip frames; each resized and centre-cropped as the clips are.
            image_folder="",
            image_resize_filter="bilinear",   # as dataset.resize_filter
            image_eval_fraction=0.05,  # held-out share of the folder (by a hash of each path)
        ),
    ))

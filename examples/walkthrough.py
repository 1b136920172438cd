# %% [markdown]
# # cryocare walk-through
#
# From an even/odd pair of half tomograms to a denoised tomogram and a
# segmentation, one stage at a time. The data are simulated, so we can score
# every step against the noiseless truth. Run it as a script
# (`python examples/walkthrough.py`) or cell by cell in Jupyter / VS Code
# (cells are marked `# %%`). It takes about a minute on two CPU cores.

# %%
import logging
from pathlib import Path

import numpy as np

import cryocare
from cryocare.demo import orthoslice_figure  # the figure of `cryocare demo`
from cryocare.metrics import psnr_lowpass, wedge_correlation  # against the wedge-free truth

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
out = Path("walkthrough_output")
out.mkdir(exist_ok=True)

# %% [markdown]
# ## 1. Data
# A crowded cell-like phantom (vesicles, filaments, macromolecules) imaged as a
# ±60° tilt series with a weak-phase CTF and Poisson noise; even and odd frames
# are reconstructed separately. With real data, read your own halves instead:
# `even, odd, info = cryocare.read_pair("tomo_even.mrc", "tomo_odd.mrc", mmap=True)`.

# %%
data = cryocare.simulate_tomogram((48, 128, 128), seed=7)
even, odd = data.even, data.odd
for name in ("even", "odd", "clean"):
    cryocare.write(out / f"{name}.mrc", getattr(data, name), voxel_size=data.voxel_size,
                   overwrite=True)
print("even/odd correlation:", np.corrcoef(even.ravel(), odd.ravel())[0, 1].round(3))

# %% [markdown]
# ## 2. Zero-shot: the shipped model, no training
# A model restores the halves in two lines: load it (the shipped general
# model, a folder of your own or a cryoCARE 0.3.0 archive), then `denoise`
# (or `predict` for one volume without halves). How it runs — tiles, memory,
# test-time flips, precision — is one `cryocare.PredictOptions`.

# %%
pretrained = cryocare.load_model("pretrained")
zero_shot = pretrained.denoise(even, odd, cryocare.PredictOptions(memory="2G"))

# %% [markdown]
# ## 3. Training pairs
# Patches at the same place in both halves; validation patches come from the
# last 10 % of the tilt axis, never overlapping a training patch.

# %%
pairs = cryocare.sample_pairs([even], [odd], patch_shape=16, n_patches=600, seed=0)
print(pairs.x_train.shape, pairs.x_val.shape, pairs.normalization)

# %% [markdown]
# ## 4. Train Noise2Noise
# A small U-Net for a short CPU budget; `CareConfig` validates every value.
# `cryocare.train` is the training entry every face of cryocare uses;
# `budget=` (seconds) would bound the run, `init="pretrained"` start it from
# the shipped general model (whose network is the recipe's: 16 filters).

# %%
config = cryocare.CareConfig(unet_n_depth=2, unet_n_first=8, train_epochs=8,
                    train_steps_per_epoch=30, train_batch_size=16,
                    train_learning_rate=2e-3, seed=0)
model = cryocare.train(pairs, config, progress=True)
model.save(out / "model", overwrite=True)
print("validation loss per epoch:", np.round(model.history["val_loss"], 4))

# %% [markdown]
# ## 5. Denoise both halves and average them (tiled, seam-free)

# %%
denoised = model.denoise(even, odd, progress=True)
cryocare.write(out / "denoised.mrc", denoised, voxel_size=data.voxel_size, overwrite=True)

# %% [markdown]
# ## 6. Compare with the raw average and a median filter, then segment

# %%
raw = (even + odd) / 2
filtered = cryocare.median(raw, size=3)
for name, volume in (("raw", raw), ("median 3x3x3", filtered), ("zero-shot", zero_shot),
                     ("CARE", denoised)):
    mask = cryocare.segment_otsu(volume, sigma=1.0)
    print(f"{name:>14}: PSNR {cryocare.psnr(data.clean, volume):6.2f} dB, "
          f"Otsu Dice {cryocare.dice(mask, data.mask):.3f}")

# %%
orthoslice_figure({"raw": raw, "median": filtered, "CARE": denoised, "noiseless": data.clean},
                  out / "walkthrough.png",
                  masks={"Otsu on CARE": cryocare.segment_otsu(denoised, sigma=1.0)})
print("figure:", out / "walkthrough.png")

# %% [markdown]
# ## 7. Restore the missing wedge too
# The tilt series covered ±60°, so a double cone of Fourier space around the
# beam axis was never measured: objects are stretched along Z. The simulator
# also gives the wedge-free truth (`data.isotropic`). `load_model("pretrained",
# wedge="-60,60")` pairs the general model (the denoiser) with the shipped
# restorer, which sees the halves binned by 2 and fills the cone, and the
# shipped refiner, which restores its finer part at full resolution;
# `fill_cone` fills the cone of a result you already have — here CARE's —
# and keeps every measured direction as it was.

# %%
restoring = cryocare.load_model("pretrained", wedge="-60,60")
restored = restoring.fill_cone(denoised, even, odd)
cryocare.write(out / "restored.mrc", restored, voxel_size=data.voxel_size, overwrite=True)
for name, volume in (("CARE", denoised), ("CARE + restorer", restored)):
    cone = wedge_correlation(data.isotropic, volume, "-60,60")
    truth_psnr = psnr_lowpass(data.isotropic, volume)
    print(f"{name:>16}: in-cone r {cone.missing:.2f}, PSNR vs wedge-free truth "
          f"{truth_psnr:.2f} dB")
orthoslice_figure({"CARE": denoised, "CARE + restorer": restored, "noiseless": data.clean,
                   "no wedge (truth)": data.isotropic}, out / "walkthrough_wedge.png")

"""Steps 7 and 8 of ``cvload demo``: learned latent augmentation, and the reference
models on loader batches."""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from cvload._util import format_table


def augment_step(videos, workdir, codec_path, *, max_seconds: float = 40.0,
                 print_fn=print) -> dict:
    """Step 7: learned latent augmentation: train a network for the demo codec (crop and
    flip), compare it with the naive latent ops and the identity on held-out videos, then
    apply it on the device inside cvload.DataLoader, feeding S3D on codes."""
    import cvload
    from cvload.augment import AugmentationNetwork, evaluate, format_report, train
    from cvload.codec import VideoCodec
    from cvload.models import S3D

    print_fn(f"[7/9] learned latent augmentation: train crop+flip for {max_seconds:.0f}s, "
             "evaluate on held-out videos, apply in the loader")
    held_out = [v.path for v in videos if v.seed % 1000 == 1][:2]
    training = [v.path for v in videos if v.path not in held_out]
    codec = VideoCodec.load(codec_path)
    out = os.path.join(workdir, f"demo_augnet_{codec.codec_id}_{max_seconds:g}.pt")
    if os.path.exists(out):
        print_fn(f"      reusing {out}")
    else:
        result = train(codec, training, out=out, ops=("crop", "flip"), steps=10**6,
                       max_seconds=max_seconds, val_every=50, checkpoint_every=10**6,
                       progress=False)
        print_fn(f"      {result.steps} steps in {result.seconds:.0f}s; held-out latent L2 "
                 f"{result.val_loss[0][1]:.4f} -> {result.val_loss[-1][1]:.4f} (identity "
                 f"{result.identity_val_loss:.4f})")
    net = AugmentationNetwork.load(out)
    report = evaluate(net, codec, held_out, clips=8)
    print_fn(format_report(report))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    augment = cvload.LatentAugment(net, codec.to(device), p=0.5, seed=0)
    loader = cvload.DataLoader(cvload.ShardDataset(os.path.join(workdir, "shards-codes"),
                                                   shuffle=True), batch_size=8, num_workers=2,
                               device=device, gpu_transforms=[augment])
    model = S3D.for_codes(codec, num_classes=4, width=0.25).to(device).eval()
    started, times = time.perf_counter(), []
    with torch.no_grad():
        for batch in loader:
            times.append(loader.stats.seconds["transforms"] - sum(times))
            logits = model(batch["latents"])
    model_s = time.perf_counter() - started - loader.stats.seconds["wait"]
    per_batch = float(np.median(times[1:] or times))  # the first batch also initialises torch
    print_fn(f"      DataLoader(gpu_transforms=[LatentAugment]) -> S3D.for_codes: latents "
             f"{tuple(batch['latents'].shape)} on {device}, logits {tuple(logits.shape)}; "
             f"augmentation {per_batch * 1000:.1f} ms per batch (median; the first took "
             f"{times[0] * 1000:.0f} ms) over {len(loader)} batches; S3D forward and loading "
             f"{model_s:.1f}s in all")
    return {"report": report, "path": out, "ms_per_batch": per_batch * 1000}


def models_step(workdir, *, print_fn=print) -> dict:
    """Step 8: the reference models take loader batches as they come: IMRNet's pretext
    losses (PMSP labels and CTP types made from each batch here;
    examples/train_imrnet_pretext.py makes them in the workers) and MVCGC's contrastive
    loss on video shards decoded on the fly, a few training steps each."""
    import cvload
    from cvload.models import IMRNet, MVCGC
    from cvload.tasks import CTP_KINDS, ctp_transform, pmsp_labels
    from cvload.video import ClipDecoder

    print_fn("[8/9] reference models on video shards decoded on the fly (3 steps each)")
    directory = os.path.join(workdir, "shards-video")
    torch.manual_seed(0)
    rows = []
    imrnet_data = cvload.ShardDataset(directory, decode=ClipDecoder(
        "imrnet", num_frames=1, gop_frames=4, size=48, sampling="center"))
    model = IMRNet(num_classes=5, frames_per_gop=3, width=0.125)
    seen = {}

    def imrnet_loss(step, batch):
        kinds = [CTP_KINDS[(step + i) % 2] for i in range(len(batch["label"]))]  # aligned/random
        items = [{k: batch[k][i] for k in ("iframe", "mv", "residual")} for i in range(len(kinds))]
        items = [ctp_transform(item, kind, other=items[(i + 1) % len(items)])
                 for i, (item, kind) in enumerate(zip(items, kinds))]
        inputs = {k: torch.stack([it[k] for it in items]) for k in ("iframe", "mv", "residual")}
        seen.update(inputs)
        pmsp = torch.stack([pmsp_labels(m) for m in inputs["mv"]])
        ctp = torch.stack([it["ctp_label"] for it in items])
        out = model(inputs)
        return model.pmsp_loss(out["pmsp"], pmsp) + torch.nn.functional.cross_entropy(out["ctp"], ctp)

    losses = _train_steps(cvload.DataLoader(imrnet_data, batch_size=4), model.parameters(),
                          imrnet_loss)
    rows.append(("IMRNet (PMSP + CTP)", f"iframe {tuple(seen['iframe'].shape)} mv "
                 f"{tuple(seen['mv'].shape)}", " ".join(f"{x:.2f}" for x in losses)))
    mvcgc_data = cvload.ShardDataset(directory, decode=ClipDecoder("mvcgc", num_frames=8,
                                                                    size=48))
    model = MVCGC(width=0.125, queue_size=64)

    def mvcgc_loss(step, batch):
        seen.update(rgb=batch["rgb"], mv=batch["mv"])
        return model(batch)["loss"]

    losses = _train_steps(cvload.DataLoader(mvcgc_data, batch_size=4),
                          [p for p in model.parameters() if p.requires_grad], mvcgc_loss)
    rows.append(("MVCGC (cross-view InfoNCE)", f"rgb {tuple(seen['rgb'].shape)} mv "
                 f"{tuple(seen['mv'].shape)}", " ".join(f"{x:.2f}" for x in losses)))
    print_fn(format_table(["model", "batch", "loss per step"], rows))
    print_fn("      full training loops: examples/train_imrnet_pretext.py, train_mvcgc.py, "
             "train_s3d_codes.py, past_future.py, rgb_vs_codes.py")
    return {"rows": rows}


def _train_steps(batches, parameters, loss_of, steps: int = 3) -> list[float]:
    """``steps`` AdamW steps on ``loss_of(step, batch)``; the losses."""
    optimiser = torch.optim.AdamW(parameters, lr=1e-3)
    losses = []
    for step, batch in zip(range(steps), batches):
        loss = loss_of(step, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses

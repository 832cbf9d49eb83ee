"""Train a codec, pack codes and video shards, and read both back with plain WebDataset.

    python examples/codes_and_shards.py VIDEO_DIR --out /tmp/cvload-example --steps 300
    python examples/codes_and_shards.py --quick     # tiny synthetic videos, tiny codec
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import tempfile

import numpy as np
import torch
import webdataset as wds

import cvload
import cvload.shards
from cvload.codec import CodecConfig, VideoCodec, train
from cvload.shards import pack, read_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("videos", nargs="?")
    parser.add_argument("--out", default=None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="cvload-example-")
    if args.quick:
        from cvload.synthetic import make_dataset

        videos = os.path.join(out, "videos")
        make_dataset(videos, videos_per_class=1, num_frames=24, width=96, height=64)
        config, steps = CodecConfig(clip_frames=8, size=(32, 32), channels=8, res_blocks=0), 10
    else:
        videos = args.videos
        config, steps = CodecConfig(clip_frames=16, size=(64, 64), temporal_stride=4), args.steps

    # 1. a codec of your own (nothing downloaded)
    result = train([videos] if os.path.isfile(videos) else
                   [p for p, _ in cvload.shards.gather_inputs([videos])],
                   out=os.path.join(out, "codec.pt"), config=config, steps=steps,
                   batch_size=4, progress=not args.quick)
    codec = VideoCodec.load(result.path)
    print(f"codec {codec.codec_id}: {steps} steps, "
          f"nominal compression {codec.compression_ratio((config.clip_frames, *config.size)).nominal:.0f}x")

    # 2. the same clips as codes shards and as video shards (remuxed, not re-encoded)
    labelled = os.path.join(videos, "labels.csv")  # path,label lists carry labels along
    inputs = [labelled] if os.path.isfile(labelled) else [videos]
    for fmt, extra in (("codes", {"codec": result.path}), ("video", {})):
        r = pack(inputs, out=os.path.join(out, fmt), format=fmt,
                 clip_frames=config.clip_frames, progress=False, **extra)
        print(f"{fmt:5s}: {r.clips} clips in {r.shards} shards, {r.bytes // max(1, r.clips)} bytes/clip")

    # 3. plain WebDataset reads them; nothing is unpickled
    index = read_index(os.path.join(out, "codes"))
    urls = [os.path.join(out, "codes", s.name) for s in index.shards]
    for sample in itertools.islice(wds.WebDataset(urls, shardshuffle=False, empty_check=False), 1):
        codes = np.load(io.BytesIO(sample["codes.npy"]), allow_pickle=False)
        video = codec.decode(torch.from_numpy(codes)[None])
        print(f"codes {codes.shape} {codes.dtype} -> decoded clip {tuple(video.shape[1:])}, "
              f"label {json.loads(sample['json'])['label']}")
    index = read_index(os.path.join(out, "video"))
    urls = [os.path.join(out, "video", s.name) for s in index.shards]
    for sample in itertools.islice(wds.WebDataset(urls, shardshuffle=False, empty_check=False), 1):
        clip = cvload.read_clip(sample["mp4"], start=1, num_frames=4, streams=("mv", "residual"))
        print(f"video shard bytes -> on-the-fly motion {clip.mv.shape} and residual "
              f"{clip.residual.shape}, frame types {clip.frame_types}")


if __name__ == "__main__":
    main()

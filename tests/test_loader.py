"""ShardDataset and cvload.DataLoader: splits, shuffling, resumption, errors, safety, memory."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

import cvload
from cvload.errors import CorruptVideoError, InvalidArgumentError, ShardError, UnsafeShardError
from cvload.shards import ShardIndex, ShardWriter, pack, read_index, write_index

HERE = os.path.dirname(os.path.abspath(__file__))


def write_codes_shards(out, *, shards=5, per_shard=7, shape=(2, 4, 4, 2), dtype=np.uint8):
    """Codes shards through the public writer: sample g holds codes filled with g (mod the
    dtype's range), label g % 5; odd shards hold one sample fewer (uneven shards)."""
    os.makedirs(out, exist_ok=True)
    index = ShardIndex(format="codes", codec_id="test-codec")
    g = 0
    for s in range(shards):
        with ShardWriter(os.path.join(out, f"shard-{s:06d}.tar")) as writer:
            for _ in range(per_shard - (s % 2)):
                codes = np.full(shape, g % np.iinfo(dtype).max, dtype)
                writer.write(f"s{g:05d}", {"codes.npy": codes, "cls": g % 5, "json": {"id": g}})
                g += 1
            index.shards.append(writer.close())
    write_index(out, index)
    return g


@pytest.fixture
def codes_dir(tmp_path):
    directory = tmp_path / "codes"
    total = write_codes_shards(directory)
    return directory, total


def ids_of(loader, limit=None):
    out = []
    for n, batch in enumerate(loader):
        if limit is not None and n >= limit:
            break
        out.append(batch["__index__"].tolist())
    return out


def flat(batches):
    return [i for b in batches for i in b]


# -- ShardDataset -------------------------------------------------------------------------------


def test_sources_directory_list_brace_glob_and_no_index_agree(codes_dir, tmp_path):
    directory, total = codes_dir
    by_dir = cvload.ShardDataset(directory)
    names = sorted(str(p) for p in directory.glob("*.tar"))
    by_list = cvload.ShardDataset(names)
    by_brace = cvload.ShardDataset(str(directory / "shard-{000000..000004}.tar"))
    by_glob = cvload.ShardDataset(str(directory / "shard-*.tar"))
    bare = tmp_path / "bare"  # the same shards without index.json: headers are scanned
    shutil.copytree(directory, bare)
    os.remove(bare / "index.json")
    scanned = cvload.ShardDataset(str(bare / "shard-{000000..000004}.tar"))
    assert by_dir.format == scanned.format == "codes"
    for ds in (by_list, by_brace, by_glob, scanned):
        assert len(ds) == total
        assert ds.fingerprint == by_dir.fingerprint
        for i in (0, 6, 7, total - 1):
            a, b = ds[i], by_dir[i]
            assert a["__key__"] == b["__key__"] and torch.equal(a["codes"], b["codes"])
    sample = by_dir[9]
    assert sample["codes"].dtype == torch.uint8 and tuple(sample["codes"].shape) == (2, 4, 4, 2)
    assert int(sample["codes"][0, 0, 0, 0]) == 9 and int(sample["label"]) == 9 % 5
    with pytest.raises(InvalidArgumentError, match="no shards match"):
        cvload.ShardDataset(str(tmp_path / "nothing-*.tar"))


def test_batched_reads_equal_single_reads_and_uint16(tmp_path):
    total = write_codes_shards(tmp_path / "u16", shards=2, per_shard=6, dtype=np.uint16,
                               shape=(2, 3, 3, 1))
    ds = cvload.ShardDataset(tmp_path / "u16", metadata=True)
    one = ds[7]
    assert one["codes"].dtype == torch.uint16 and one["json"] == {"id": 7}
    loader = cvload.DataLoader(cvload.ShardDataset(tmp_path / "u16"), batch_size=4)
    batches = list(loader)
    assert [b["__index__"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    for batch in batches:
        for row, index in zip(batch["codes"], batch["__index__"]):
            assert torch.equal(row, ds[int(index)]["codes"])
        assert batch["label"].tolist() == [i % 5 for i in batch["__index__"].tolist()]
    assert loader.stats.samples == total and loader.stats.bytes_read > total * 18


def test_user_collate_fn_gets_sample_dicts(codes_dir):
    directory, total = codes_dir
    seen = []

    def collate(samples):
        seen.append(type(samples[0]).__name__)
        return [s["__key__"] for s in samples]

    loader = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=8, collate_fn=collate)
    keys = flat(list(loader))
    assert keys == [f"s{i:05d}" for i in range(total)] and set(seen) == {"dict"}


# -- torch compatibility ----------------------------------------------------------------------


def test_plain_dataset_behaves_like_torch():
    data = torch.utils.data.TensorDataset(torch.arange(50).float(), torch.arange(50) % 3)
    for kwargs in (dict(batch_size=8), dict(batch_size=8, drop_last=True),
                   dict(batch_size=None), dict(batch_size=4, num_workers=2)):
        ours = list(cvload.DataLoader(data, **kwargs))
        theirs = list(torch.utils.data.DataLoader(data, **kwargs))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
    gen = dict(batch_size=7, shuffle=True)
    ours = cvload.DataLoader(data, generator=torch.Generator().manual_seed(3), **gen)
    theirs = torch.utils.data.DataLoader(data, generator=torch.Generator().manual_seed(3), **gen)
    assert [b[0].tolist() for b in ours] == [b[0].tolist() for b in theirs]
    loader = cvload.DataLoader(data, batch_size=5)
    assert isinstance(loader, torch.utils.data.DataLoader) and len(loader) == 10


class _WorkerReport(torch.utils.data.Dataset):
    """Each item says, from the process that read it, whether the allocator was tuned
    and what the user's worker_init_fn left behind."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        from cvload._alloc import allocator_tuned

        return torch.tensor([int(allocator_tuned()), _INIT_MARK.get("id", -1), os.getpid()])


_INIT_MARK: dict = {}


def _mark_worker(worker_id):
    _INIT_MARK["id"] = worker_id


@pytest.mark.skipif(sys.platform != "linux", reason="allocator tuning is for glibc (Linux)")
def test_worker_processes_tune_the_allocator_and_still_run_the_users_init(monkeypatch):
    from cvload._alloc import allocator_tuned

    assert not allocator_tuned()  # the test process itself is left alone
    rows = torch.cat(list(cvload.DataLoader(_WorkerReport(), batch_size=2, num_workers=2,
                                            worker_init_fn=_mark_worker)))
    assert rows[:, 0].tolist() == [1, 1, 1, 1]  # tuned in every worker
    assert sorted(set(rows[:, 1].tolist())) == [0, 1]  # the user's init ran in both
    assert os.getpid() not in rows[:, 2].tolist()
    monkeypatch.setenv("CVLOAD_TUNE_ALLOCATOR", "0")
    rows = torch.cat(list(cvload.DataLoader(_WorkerReport(), batch_size=2, num_workers=2)))
    assert rows[:, 0].tolist() == [0, 0, 0, 0]
    assert not allocator_tuned()


@pytest.mark.skipif(sys.platform != "linux", reason="allocator tuning is for glibc (Linux)")
def test_tune_allocator_in_a_fresh_process():
    code = ("import cvload._alloc as a; print(a.allocator_tuned(), a.tune_allocator(), "
            "a.tune_allocator(), a.allocator_tuned())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "True", "True"]


def test_every_torch_keyword_is_accepted(codes_dir):
    import inspect

    torch_params = set(inspect.signature(torch.utils.data.DataLoader.__init__).parameters)
    ours = inspect.signature(cvload.DataLoader.__init__).parameters
    assert torch_params <= set(ours)
    for name in torch_params - {"self", "dataset"}:
        assert ours[name].default == inspect.signature(
            torch.utils.data.DataLoader.__init__).parameters[name].default, name


def test_plain_dataset_shuffle_is_seeded_per_epoch_and_resumes():
    data = torch.utils.data.TensorDataset(torch.arange(40))
    loader = cvload.DataLoader(data, batch_size=6, shuffle=True, seed=5)
    epoch0 = [b[0].tolist() for b in loader]
    epoch1 = [b[0].tolist() for b in loader]  # next pass: next epoch
    assert epoch0 != epoch1 and sorted(flat(epoch0)) == list(range(40))
    again = cvload.DataLoader(data, batch_size=6, shuffle=True, seed=5)
    it = iter(again)
    head = [next(it)[0].tolist() for _ in range(3)]
    state = again.state_dict()
    resumed = cvload.DataLoader(data, batch_size=6, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    assert head + [b[0].tolist() for b in resumed] == epoch0


def test_plain_dataset_bad_batches_follow_the_handler():
    class Flaky(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            if i == 5:
                raise CorruptVideoError("decoding failed", source=f"video{i}.mp4", frame=3)
            return torch.tensor(i)

    with pytest.raises(CorruptVideoError, match="video5.mp4"):
        list(cvload.DataLoader(Flaky(), batch_size=4))
    loader = cvload.DataLoader(Flaky(), batch_size=4, handler="skip", num_workers=2)
    assert [b.tolist() for b in loader] == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert loader.stats.skipped == {"CorruptVideoError": 1} and loader.stats.batches_skipped == 1


# -- ranks, shuffling, resumption ---------------------------------------------------------------


def rank_loaders(directory, world, monkeypatch, **kwargs):
    loaders = []
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        loaders.append(cvload.DataLoader(cvload.ShardDataset(directory), **kwargs))
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    return loaders


@pytest.mark.parametrize("world,batch_size,drop_last", [(2, 4, False), (3, 5, False),
                                                        (4, 3, True)])
def test_ranks_get_equal_batches_and_every_sample_once(codes_dir, monkeypatch, world,
                                                       batch_size, drop_last):
    directory, total = codes_dir
    loaders = rank_loaders(directory, world, monkeypatch, batch_size=batch_size, shuffle=True,
                           drop_last=drop_last)
    per_rank = [ids_of(loader) for loader in loaders]
    counts = {len(batches) for batches in per_rank}
    assert counts == {len(loaders[0])}  # same number of batches everywhere, = len()
    everything = flat(flat(per_rank))
    if drop_last:
        assert len(set(everything)) == len(everything)  # nothing twice
    else:
        assert set(everything) == set(range(total))
        assert len(everything) - total <= world - 1  # only the documented padding


def test_shuffle_is_global_and_deterministic_per_seed_and_epoch(codes_dir):
    directory, total = codes_dir
    ds = cvload.ShardDataset(directory, shuffle=True, seed=1)
    a, b = ds.order(0), ds.order(0)
    assert np.array_equal(a, b) and sorted(a.tolist()) == list(range(total))
    assert not np.array_equal(ds.order(0), ds.order(1))
    assert not np.array_equal(ds.order(0, seed=2), a)
    # global: the first 7 samples come from several shards, not one shard after another
    shards = {ds.locate(int(i))[0] for i in a[:7]}
    assert len(shards) >= 3
    blocked = cvload.ShardDataset(directory, shuffle=True, seed=1, shuffle_block=1)
    first = blocked.order(0)[:6]  # shard-wise blocks: one shard's samples together
    assert len({blocked.locate(int(i))[0] for i in first}) <= 2
    loader = cvload.DataLoader(ds, batch_size=4)
    e0, e1 = flat(ids_of(loader)), flat(ids_of(loader))  # auto-advancing epochs
    assert e0 == a.tolist() and e1 == ds.order(1).tolist()
    loader.set_epoch(0)
    assert flat(ids_of(loader)) == e0


@pytest.mark.parametrize("save_world,resume_world,workers", [(1, 1, (0, 2)), (2, 3, (2, 0)),
                                                             (3, 1, (0, 0))])
def test_resume_yields_exactly_the_rest_in_order(codes_dir, monkeypatch, save_world,
                                                 resume_world, workers):
    directory, total = codes_dir
    kwargs = dict(batch_size=3, shuffle=True, seed=7)
    full_order = cvload.ShardDataset(directory).order(0, shuffle=True, seed=7).tolist()
    saving = rank_loaders(directory, save_world, monkeypatch, num_workers=workers[0], **kwargs)
    taken = []
    iterators = [iter(loader) for loader in saving]
    for _ in range(2):  # all ranks step in lockstep
        for it in iterators:
            taken += next(it)["__index__"].tolist()
    state = saving[0].state_dict()
    with pytest.raises(InvalidArgumentError, match="after iteration began"):
        saving[0].load_state_dict(state)
    consumed = set(taken)
    assert consumed == set(full_order[:len(consumed)])  # a prefix of the global order
    resumed = rank_loaders(directory, resume_world, monkeypatch, num_workers=workers[1], **kwargs)
    rest_by_rank = []
    for loader in resumed:
        loader.load_state_dict(state)
        rest_by_rank.append(flat(ids_of(loader)))
    rest = [i for i in full_order if i not in consumed]
    # interleaving the ranks' streams restores the global order of the rest
    merged = []
    for k in range(max(map(len, rest_by_rank))):
        merged += [r[k] for r in rest_by_rank if k < len(r)]
    assert merged[:len(rest)] == rest and set(merged) == set(rest)
    assert len({len(r) for r in rest_by_rank}) == 1


def test_resume_checks_the_state(codes_dir, tmp_path):
    directory, _ = codes_dir
    loader = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=4)
    next(iter(loader))
    state = loader.state_dict()
    other = tmp_path / "other"
    write_codes_shards(other, shards=2)
    with pytest.raises(InvalidArgumentError, match="another set of shards"):
        cvload.DataLoader(cvload.ShardDataset(other), batch_size=4).load_state_dict(state)
    with pytest.raises(InvalidArgumentError, match="not a cvload.DataLoader state"):
        cvload.DataLoader(cvload.ShardDataset(directory)).load_state_dict({"epoch": 3})
    fresh = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=4)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state  # unchanged until iterated
    fresh.set_epoch(1)  # another epoch: the saved position no longer applies
    assert len(flat(ids_of(fresh))) == len(fresh.dataset)


def test_end_of_epoch_state_moves_to_the_next_epoch(codes_dir):
    directory, _ = codes_dir
    loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), batch_size=4)
    list(loader)
    state = loader.state_dict()
    resumed = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), batch_size=4)
    resumed.load_state_dict(state)
    assert flat(ids_of(resumed)) == resumed.dataset.order(1).tolist()


@pytest.mark.slow
def test_torchrun_two_ranks_gloo(codes_dir, tmp_path):
    directory, total = codes_dir
    script = os.path.join(HERE, "dist_loader_check.py")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         script, str(directory), str(tmp_path)],
        capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import json

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["batches"][0] == report["batches"][1]
    assert sorted(set(report["ids"])) == list(range(total))
    assert len(report["ids"]) - total <= 1
    # a state saved by rank 0 of the two-rank run resumes on one process
    loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True, seed=3),
                               batch_size=4)
    loader.load_state_dict(report["state"])
    rest = flat(ids_of(loader))
    assert sorted(rest + report["consumed"]) == list(range(total))


# -- errors, safety, memory ---------------------------------------------------------------------


def test_corrupt_truncated_and_missing_shards(codes_dir):
    directory, total = codes_dir
    index = read_index(directory)
    # corrupt: sample 2's .npy header; truncated: the last shard; missing: shard 1
    key2 = index.shards[0].keys[2]
    offset, _ = index.shards[0].members[key2]["codes.npy"]
    path0 = directory / index.shards[0].name
    data = bytearray(path0.read_bytes())
    data[offset:offset + 6] = b"garbag"
    path0.write_bytes(bytes(data))
    last = directory / index.shards[-1].name
    last.write_bytes(last.read_bytes()[:1500])
    os.remove(directory / index.shards[1].name)

    strict = cvload.ShardDataset(directory)
    with pytest.raises(ShardError, match=rf"shard-000000.tar:{key2}.codes.npy"):
        strict[2]
    with pytest.raises(ShardError, match="shard-000001.tar.*missing"):
        strict[8]
    with pytest.raises(ShardError, match="shard-000004.tar.*truncated"):
        strict[total - 1]
    with pytest.raises(ShardError):
        list(cvload.DataLoader(strict, batch_size=4))
    for worker_type, workers in (("inline", 0), ("thread", 2), ("process", 2)):
        # batches before the bad one are still yielded, whatever reads ahead
        loader = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=1,
                                   worker_type=worker_type, num_workers=workers)
        iterator = iter(loader)
        assert [int(next(iterator)["__index__"]) for _ in range(2)] == [0, 1]
        with pytest.raises(ShardError, match=key2):
            next(iterator)

    for handler in ("skip", "warn"):
        loader = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=4, handler=handler,
                                   num_workers=2)
        if handler == "warn":
            with pytest.warns(RuntimeWarning):
                batches = ids_of(loader)
        else:
            batches = ids_of(loader)
        got = flat(batches)
        missing = index.shards[1].samples
        assert len(batches) == len(loader)  # every batch is still yielded
        assert loader.stats.skipped["ShardError"] >= 1 + missing
        assert 2 not in got and 8 not in got and 0 in got
        assert loader.stats.samples == len(got)


def test_shard_replaced_after_indexing_is_refused(codes_dir):
    directory, _ = codes_dir
    with open(directory / "shard-000003.tar", "ab") as f:
        f.write(bytes(1024))  # re-packed or appended to: offsets no longer trusted
    with pytest.raises(ShardError, match="shard-000003.tar.*changed since index.json"):
        list(cvload.DataLoader(cvload.ShardDataset(directory), batch_size=4))


def test_missing_shard_of_a_pattern_without_index(codes_dir, tmp_path):
    directory, total = codes_dir
    bare = tmp_path / "bare"
    shutil.copytree(directory, bare)
    os.remove(bare / "index.json")
    os.remove(bare / "shard-000002.tar")
    pattern = str(bare / "shard-{000000..000004}.tar")
    with pytest.raises(ShardError, match="shard-000002.tar.*missing"):
        cvload.ShardDataset(pattern)
    ds = cvload.ShardDataset(pattern, handler="skip")
    assert len(ds) == total - 7 and ds.skipped.counts["ShardError"] == 1
    assert len(flat(ids_of(cvload.DataLoader(ds, batch_size=5)))) == total - 7


def test_fully_failed_batch_is_replaced_so_ranks_stay_equal(codes_dir):
    directory, total = codes_dir
    index = read_index(directory)
    os.remove(directory / index.shards[1].name)  # ids 7..12
    loader = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=2, handler="skip")
    batches = ids_of(loader)
    assert len(batches) == len(loader)
    assert loader.stats.substituted >= 2 and loader.stats.skipped["ShardError"] == 6


def test_hostile_shard_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    good = io.BytesIO()
    np.save(good, np.zeros((2, 2, 2, 1), np.uint8))
    evil_npy = io.BytesIO()
    np.save(evil_npy, np.array([Evil()], dtype=object), allow_pickle=True)
    path = tmp_path / "hostile-000000.tar"
    with tarfile.open(path, "w") as tar:
        add(tar, "a.codes.npy", good.getvalue())
        add(tar, "b.codes.npy", good.getvalue())
        add(tar, "b.pyd", pickle.dumps(Evil()))
        add(tar, "c.codes.npy", good.getvalue())
        add(tar, "c.pickle", pickle.dumps(Evil()))
        add(tar, "d.codes.npy", evil_npy.getvalue())
        add(tar, "e.codes.npy", good.getvalue())
    ds = cvload.ShardDataset(str(path))
    assert ds.format == "codes" and len(ds) == 5
    for i in (1, 2, 3):
        with pytest.raises(UnsafeShardError):
            ds[i]
    for collate in (None, lambda samples: samples):
        loader = cvload.DataLoader(cvload.ShardDataset(str(path)), batch_size=5, handler="skip",
                                   collate_fn=collate, num_workers=1)
        (batch,) = list(loader)
        keys = batch["__key__"] if isinstance(batch, dict) else [s["__key__"] for s in batch]
        assert keys == ["a", "e"]
        assert loader.stats.skipped["UnsafeShardError"] == 3
    assert not marker.exists()


def _rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux only)")
@pytest.mark.parametrize("worker_type", ["process", "thread", "inline"])
def test_memory_stays_flat_over_many_epochs_with_persistent_workers(tmp_path, worker_type):
    import gc

    gc.collect()
    write_codes_shards(tmp_path / "m", shards=8, per_shard=32, shape=(8, 32, 32, 4))
    loader = cvload.DataLoader(cvload.ShardDataset(tmp_path / "m", shuffle=True), batch_size=8,
                               num_workers=2, persistent_workers=True, drop_last=True,
                               worker_type=worker_type)

    def rss():  # this process and this loader's (persistent) worker processes
        iterator = loader._iterator if worker_type == "process" else None
        workers = [w.pid for w in iterator._workers] if iterator is not None else []
        return _rss_mb(os.getpid()) + sum(_rss_mb(pid) for pid in workers)

    iterations, samples = 0, []
    for epoch in range(20):
        for batch in loader:
            # read every byte, as training does: a retained batch then shows in RSS
            # (unread shared-memory pages from the workers would not)
            assert batch["codes"].shape[0] == 8 and int(batch["codes"].sum()) > 0
            iterations += 1
        samples.append(rss())
    # RSS wanders by +-15 MB (allocator arenas, shared-memory batches); a leak of one
    # batch per iteration would add 8 MB per epoch, ~100 MB between the two windows
    early, late = np.median(samples[4:8]), np.median(samples[16:20])
    assert iterations == 20 * 31 and loader.stats.batches == iterations
    assert late - early < 24, f"resident memory grew by {late - early:.1f} MB in 12 epochs"


# -- video and rgb shards, the device stage -----------------------------------------------------


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from tests.conftest import write_labelled_videos

    root = tmp_path_factory.mktemp("loader-src")
    videos = write_labelled_videos(root, 2, num_frames=32, motion_y=1)
    out = tmp_path_factory.mktemp("loader-shards")
    for fmt, extra in (("video", {}), ("rgb", {"size": (48, 64)})):
        pack([root / "labels.csv"], out=out / fmt, format=fmt, clip_frames=8, shard_samples=3,
             progress=False, **extra)
    return root, out, videos


def test_video_shards_decode_on_the_fly_into_layouts(packed):
    root, out, videos = packed
    ds = cvload.ShardDataset(out / "video", metadata=True)
    rgbs = cvload.ShardDataset(out / "rgb", metadata=True)
    assert ds.format == "video" and rgbs.format == "rgb" and len(ds) == len(rgbs) == 8
    for i in (0, 5):
        sample, stored = ds[i], rgbs[i]
        meta = sample["json"]
        assert sample["rgb"].shape == (8, 3, 48, 64) and sample["rgb"].dtype == torch.uint8
        expected = cvload.read_clip(meta["source"], start=meta["frame_start"], num_frames=8,
                                    streams=("rgb",)).rgb
        assert np.array_equal(sample["rgb"].permute(0, 2, 3, 1).numpy(), expected)
        assert torch.equal(stored["rgb"], sample["rgb"])  # rgb shards hold the same frames
        assert int(sample["label"]) == meta["label"]
    mvcgc = cvload.ShardDataset(out / "video", decode="mvcgc")
    item = mvcgc[1]
    assert item["mv"].shape == (8, 4, 12, 16)
    assert float(item["mv"][1:, 0].mean()) < -0.5  # content moves right: vectors point back
    imrnet = cvload.ShardDataset(out / "video", decode=cvload.video.ClipDecoder(
        "imrnet", num_frames=1, gop_frames=4))
    assert imrnet[0]["residual"].shape == (1, 3, 3, 48, 64)
    loader = cvload.DataLoader(cvload.ShardDataset(out / "video", decode="mvcgc"), batch_size=3,
                               num_workers=2)
    batches = list(loader)
    assert [b["mv"].shape[0] for b in batches] == [3, 3, 2]
    assert loader.stats.seconds["decode"] > 0 and loader.stats.samples == 8
    with pytest.raises(InvalidArgumentError, match="Invalid decode"):
        cvload.ShardDataset(out / "video", decode="optical-flow")


def test_decode_kinds_raw_custom_and_metadata(packed):
    """Each ``decode=`` kind gives what it documents on the same packed sample."""
    _, out, _ = packed
    auto = cvload.ShardDataset(out / "video")
    assert auto.decoding.kind == "auto" and "json" not in auto[0]
    assert auto[0]["rgb"].dtype == torch.uint8 and auto[0]["rgb"].shape[1] == 3
    raw = cvload.ShardDataset(out / "video", decode="raw")
    sample = raw[0]
    assert raw.decoding.kind == "raw" and isinstance(sample["mp4"], bytes)
    assert sample["mp4"][4:8] == b"ftyp" and sample["json"]["video_id"] in sample["__key__"]
    seen = []
    custom = cvload.ShardDataset(out / "video",
                                 decode=lambda members: {"suffixes": sorted(seen.append(1) or members)})
    assert custom.decoding.kind == "custom" and custom[2]["suffixes"] == ["cls", "json", "mp4"]
    assert seen == [1]
    meta = cvload.ShardDataset(out / "video", decode="mvcgc", metadata=True)
    assert meta.decoding.kind == "clips" and meta[0]["json"]["format"] == "video"
    assert not meta.decoding.copy_only and "mv" in meta[0]
    with pytest.raises(InvalidArgumentError, match="not int"):
        cvload.ShardDataset(out / "video", decode=3)


def test_corrupt_video_member_names_shard_and_member(packed, tmp_path):
    _, out, _ = packed
    broken = tmp_path / "video"
    shutil.copytree(out / "video", broken)
    index = read_index(broken)
    key = index.shards[0].keys[1]
    offset, size = index.shards[0].members[key]["mp4"]
    path = broken / index.shards[0].name
    data = bytearray(path.read_bytes())
    data[offset + 64:offset + size - 64] = bytes(size - 128)
    path.write_bytes(bytes(data))
    with pytest.raises(cvload.CvloadError, match=rf"{index.shards[0].name}:{key}.mp4"):
        cvload.ShardDataset(broken)[1]
    loader = cvload.DataLoader(cvload.ShardDataset(broken), batch_size=4, handler="skip")
    assert sum(len(b["__key__"]) for b in loader) == 7 and loader.stats.skipped.total() == 1


class Brighten(torch.nn.Module):
    def forward(self, batch):
        return dict(batch, codes=batch["codes"].float() + 1.0)


def test_device_stage_and_gpu_transforms_on_cpu(codes_dir):
    directory, total = codes_dir
    loader = cvload.DataLoader(cvload.ShardDataset(directory), batch_size=8, device="cpu",
                               gpu_transforms=[Brighten()], num_workers=2)
    batches = list(loader)
    assert batches[1]["codes"].dtype == torch.float32
    assert float(batches[1]["codes"][0].mean()) == 8 + 1
    stats = loader.stats.as_dict()
    assert stats["samples"] == total and stats["batches"] == len(loader) == 5
    assert set(stats["seconds"]) == {"read", "decode", "collate", "transfer", "transforms", "wait"}
    assert stats["seconds"]["transforms"] > 0
    with pytest.raises(InvalidArgumentError, match="not callable"):
        cvload.DataLoader(cvload.ShardDataset(directory), gpu_transforms=[3])
    with pytest.raises(InvalidArgumentError, match="leave sampler and batch_sampler unset"):
        cvload.DataLoader(cvload.ShardDataset(directory), sampler=range(3))
    with pytest.raises(InvalidArgumentError, match="worker_type"):
        cvload.DataLoader(cvload.ShardDataset(directory), worker_type="fibers")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgumentError, match="no CUDA device"):
            cvload.DataLoader(cvload.ShardDataset(directory), device="cuda")


@pytest.mark.needs_cuda
def test_device_stage_on_cuda_with_workers(codes_dir):
    directory, total = codes_dir
    loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), batch_size=4,
                               num_workers=2, device="cuda", gpu_transforms=[Brighten()])
    torch.cuda.init()  # CUDA live in the main process before the workers fork
    seen = []
    for batch in loader:
        assert batch["codes"].is_cuda and batch["label"].is_cuda
        seen += batch["__index__"].cpu().tolist()
        assert torch.equal(batch["codes"][:, 0, 0, 0, 0].long().cpu() - 1,
                           batch["__index__"].cpu() % 255)
    assert sorted(seen) == list(range(total)) and loader.pin_memory


def test_gather_spans_kernel_copies_checks_headers_and_bounds():
    from cvload_ext import gather_spans

    rng = np.random.default_rng(0)
    buffer = rng.integers(0, 255, 4096, dtype=np.uint8)
    other = np.zeros(8, np.uint8)
    header = np.frombuffer(b"HEADER!!", np.uint8)
    for length, starts in ((16, [0, 64, 200]), (13, [3, 101, 555])):  # aligned / not
        for s in starts:
            buffer[s:s + len(header)] = header
        starts = np.array(starts + [1000, 4090], np.int64)  # wrong header, past the end
        out = np.zeros((6, length), np.uint8)
        ok = np.zeros(len(starts), bool)
        addresses = np.array([other.ctypes.data, buffer.ctypes.data], np.int64)
        lengths = np.array([len(other), len(buffer)], np.int64)
        gather_spans(addresses, lengths, np.ones(len(starts), np.int64), starts, header, out,
                     np.array([5, 0, 2, 1, 3]), ok)
        assert ok.tolist() == [True, True, True, False, False]
        for row, s in zip((5, 0, 2), starts[:3]):
            assert np.array_equal(out[row], buffer[s + 8:s + 8 + length])
        assert not out[[1, 3, 4]].any()


def test_codes_path_without_jit(codes_dir):
    """CVLOAD_DISABLE_JIT=1: the same kernel as plain Python (through ctypes views)."""
    directory, total = codes_dir
    code = ("import cvload, cvload_ext, json, sys;"
            "from tests.test_loader import test_gather_spans_kernel_copies_checks_headers_and_bounds as t;"
            "t();"
            f"b = list(cvload.DataLoader(cvload.ShardDataset({str(directory)!r}), batch_size=8));"
            "print(json.dumps([cvload_ext.JIT_ENABLED, [x['codes'][:, 0, 0, 0, 0].tolist() for x in b]]))")
    env = {**os.environ, "CVLOAD_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=os.path.dirname(HERE),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    enabled, values = json.loads(out.stdout)
    assert enabled is False and [v for b in values for v in b] == list(range(total))


def test_mixed_code_shapes_in_a_batch(tmp_path):
    out = tmp_path / "mixed"
    index = ShardIndex(format="codes")
    with ShardWriter(out.mkdir() or out / "shard-000000.tar") as writer:
        for g in range(4):
            shape = (2, 4, 4, 1) if g != 2 else (2, 8, 8, 1)
            writer.write(f"k{g}", {"codes.npy": np.full(shape, g, np.uint8)})
        index.shards.append(writer.close())
    write_index(out, index)
    with pytest.raises(ShardError, match="do not match the batch"):
        list(cvload.DataLoader(cvload.ShardDataset(out), batch_size=4))
    loader = cvload.DataLoader(cvload.ShardDataset(out), batch_size=4, handler="skip")
    (batch,) = list(loader)
    assert batch["__key__"] == ["k0", "k1", "k3"] and batch["codes"][:, 0, 0, 0, 0].tolist() == [0, 1, 3]


def test_rgb_shards_of_jpeg_frames(tmp_path):
    """The other rgb layout of the shard format: KEY.NNNN.jpg members, one per frame."""
    from PIL import Image

    out = tmp_path / "jpg"
    out.mkdir()
    index = ShardIndex(format="rgb")
    frames = np.zeros((3, 16, 24, 3), np.uint8)
    frames[..., 0] = np.arange(3)[:, None, None] * 80  # a different red level per frame
    with ShardWriter(out / "shard-000000.tar") as writer:
        for key in ("a", "b"):
            members = {"cls": 1}
            for t, frame in enumerate(frames):
                buffer = io.BytesIO()
                Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
                members[f"{t:04d}.jpg"] = buffer.getvalue()
            writer.write(key, members)
        index.shards.append(writer.close())
    write_index(out, index)
    (batch,) = list(cvload.DataLoader(cvload.ShardDataset(out), batch_size=2))
    assert batch["rgb"].shape == (2, 3, 3, 16, 24) and batch["rgb"].dtype == torch.uint8
    reds = batch["rgb"][0, :, 0].float().mean(dim=(1, 2))
    assert torch.allclose(reds, torch.tensor([0.0, 80.0, 160.0]), atol=3)
    assert batch["label"].tolist() == [1, 1]


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_out_of_order_delivery_still_resumes_exactly(codes_dir, worker_type):
    directory, total = codes_dir
    kwargs = dict(batch_size=3, num_workers=2, in_order=False, worker_type=worker_type,
                  collate_fn=None)
    loader = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), **kwargs)
    iterator = iter(loader)
    head = [i for _ in range(4) for i in next(iterator)["__index__"].tolist()]
    state = loader.state_dict()
    resumed = cvload.DataLoader(cvload.ShardDataset(directory, shuffle=True), batch_size=3)
    resumed.load_state_dict(state)
    rest = flat(ids_of(resumed))
    assert sorted(head + rest) == list(range(total)) and not set(head) & set(rest)

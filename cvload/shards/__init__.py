"""The on-disk format (WebDataset tar shards plus ``index.json``) and its two pipelines.

Writing (``cvload pack``): ``_inputs`` gathers the videos; ``_pack`` plans clips and work
units (a frozen ``PackSpec`` shared by all) and assembles the final shards; ``_units``
writes one unit (locally, in a process pool or on Ray Data) with ``_samples`` making each
sample (remuxed video, RGB frames or neural codes) and ``_writer`` the tar; ``_index``
writes the index last. Reading: ``_sources`` finds shards (directories, brace patterns,
globs, tars without an index); ``_reader.ShardDataset`` reads samples by random access
from memory-mapped tars (``_members.MemberDecoding`` turns member bytes into tensors,
``_npy`` parses ``.npy`` headers without pickle) and implements
the batch protocol of :mod:`cvload.batching`; ``_codes_path`` copies a whole batch of
codes in one kernel call. ``_inspect`` summarises and verifies shards.
"""

from cvload.shards._index import SCHEMA_VERSION, ShardIndex, read_index, write_index
from cvload.shards._inspect import decode_member, inspect_shards
from cvload.shards._members import MemberDecoding
from cvload.shards._reader import ShardDataset, expand_sources
from cvload.shards._inputs import VIDEO_SUFFIXES, gather_inputs
from cvload.shards._pack import PackResult, pack
from cvload.shards._writer import ShardInfo, ShardWriter

__all__ = ["SCHEMA_VERSION", "VIDEO_SUFFIXES", "MemberDecoding", "PackResult", "ShardIndex",
           "ShardDataset", "ShardInfo", "ShardWriter", "decode_member", "expand_sources", "gather_inputs", "inspect_shards", "pack", "read_index",
           "write_index"]

"""The on-disk format: WebDataset tar shards plus index.json, and the pack pipeline."""

from cvload.shards._index import SCHEMA_VERSION, ShardIndex, read_index, write_index
from cvload.shards._inspect import decode_member, inspect_shards
from cvload.shards._reader import ShardDataset, expand_sources
from cvload.shards._inputs import VIDEO_SUFFIXES, gather_inputs
from cvload.shards._pack import PackResult, pack
from cvload.shards._writer import ShardInfo, ShardWriter

__all__ = ["SCHEMA_VERSION", "VIDEO_SUFFIXES", "PackResult", "ShardIndex", "ShardDataset", "ShardInfo", "ShardWriter",
           "decode_member", "expand_sources", "gather_inputs", "inspect_shards", "pack", "read_index",
           "write_index"]

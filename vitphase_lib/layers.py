"""The layer vocabulary: which layers of a ViT every analysis reads, their names, order and
block numbers (Methods, 'Layers, tokens and the single pass').

A ViT with L blocks is read at L + 3 layers, in network order:

* ``raw``: the patch embeddings before the positional encoding (patch tokens only);
* ``pe``: the input of the blocks' stack (prefix tokens prepended, positional encoding added);
* ``"1"`` .. ``"L"``: the output of each block (the residual stream), named by its number;
* ``head``: after the final norm, the features the classifier reads.

Every table of the library has a ``layer`` column with these names (strings, also for the
blocks), and the figures place the layers on one x axis by :func:`position`: raw at -1, pe at 0,
block b at b and the head at L + 0.5. This module is the one place that knows these rules.
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

RAW = "raw"
PE = "pe"
HEAD = "head"
INPUTS = (RAW, PE)  # the two layers before the first block, in order


def block_layer(block: int) -> str:
    """The name of block ``block``'s output layer (blocks count from 1)."""
    return str(block)


def layer_names(num_blocks: int) -> list[str]:
    """Every layer of a ViT with ``num_blocks`` blocks, in network order: raw, pe, 1..L, head."""
    return [*INPUTS, *(block_layer(b) for b in range(1, num_blocks + 1)), HEAD]


def is_block(layer: str) -> bool:
    """Whether ``layer`` is a block's output ("1".."L"), not raw, pe or head."""
    return str(layer).isdigit()


def block_number(layer: str) -> int | None:
    """The block number of a block's layer ("7" -> 7); None for raw, pe and head."""
    return int(layer) if is_block(layer) else None


def blocks_passed(layer: str) -> int:
    """How many blocks the tokens of ``layer`` have passed through: 0 at raw and pe, b after
    block b. The head has no such count without the model's depth, so it is refused."""
    if layer in INPUTS:
        return 0
    number = block_number(layer)
    if number is None:
        raise ValueError(f"layer {layer!r} is not raw, pe or a block")
    return number


def position(layer: str, num_blocks: int) -> float:
    """Where ``layer`` sits on the figures' x axis: raw -1, pe 0, block b at b, head L + 0.5
    (the head is drawn half a block after the last block, which it follows without a block)."""
    layer = str(layer)
    if layer == RAW:
        return -1.0
    if layer == PE:
        return 0.0
    if layer == HEAD:
        return num_blocks + 0.5
    number = block_number(layer)
    if number is None:
        raise ValueError(f"unknown layer {layer!r}: expected raw, pe, a block number or head")
    return float(number)


def sort_key(layer: str) -> tuple[int, int]:
    """A key that sorts layer names in network order (blocks by number, not as text)."""
    layer = str(layer)
    if layer in INPUTS:
        return 0, INPUTS.index(layer)
    if layer == HEAD:
        return 2, 0
    number = block_number(layer)
    if number is None:
        raise ValueError(f"unknown layer {layer!r}: expected raw, pe, a block number or head")
    return 1, number


def layer_order(layers: Iterable[str]) -> list[str]:
    """The distinct layer names of ``layers`` in network order: raw, pe, 1..L, head."""
    return sorted(set(layers), key=sort_key)


def blocks_only(layer_column: pd.Series) -> pd.Series:
    """A mask of a table's ``layer`` column: True on the blocks' rows (not raw, pe, head)."""
    return layer_column.astype(str).map(is_block).astype(bool)


def depth_of_each_row(frame: pd.DataFrame) -> pd.Series:
    """Per row of a table with ``model`` and ``layer`` columns, the model's number of blocks
    (its highest block number in the table)."""
    numbers = frame["layer"].map(block_number).astype("float64")
    return numbers.groupby(frame["model"]).transform("max")

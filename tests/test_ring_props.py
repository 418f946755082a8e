"""Property tests: random interleavings of publish (Python single/array, native single/batched,
counting or retrying producers) and peek/consume, at random capacities, against a deque model."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barfast.engine import _core
from barfast.ring import Ring, check_synthetic, synthetic_records

ops = st.one_of(
    st.tuples(st.just("py"), st.integers(0, 300)),
    st.tuples(st.just("py_retry"), st.integers(0, 300)),
    st.tuples(st.just("py_one"), st.sampled_from(["void", "tuple", "dict"])),
    st.tuples(st.just("nat_single"), st.integers(0, 300)),
    st.tuples(st.just("nat_batch"), st.integers(0, 300), st.integers(1, 70)),
    st.tuples(st.just("consume"), st.integers(0, 300)),
    st.tuples(st.just("consume_bad"), st.integers(1, 5)),
    st.tuples(st.just("peek"), st.one_of(st.none(), st.integers(0, 300))),
)


class Model:
    def __init__(self, capacity: int) -> None:
        self.cap = capacity
        self.q: deque[int] = deque()
        self.dropped = 0
        self.next_seq = 0
        self.consumed = 0

    def offer(self, k: int, count: bool = True) -> int:
        acc = min(k, self.cap - len(self.q))
        self.q.extend(range(self.next_seq, self.next_seq + acc))
        if count:
            self.dropped += k - acc
        self.next_seq += k
        return acc


@settings(max_examples=250, deadline=None)
@given(cap_log2=st.integers(0, 7), program=st.lists(ops, max_size=60))
def test_random_interleavings_match_a_deque(cap_log2, program):
    cap = 1 << cap_log2
    ring = Ring.create(cap)
    m = Model(cap)
    for op in program:
        kind = op[0]
        if kind == "py":
            assert ring.publish(synthetic_records(m.next_seq, op[1])) == m.offer(op[1])
        elif kind == "py_retry":
            got = ring.publish(synthetic_records(m.next_seq, op[1]), count_dropped=False)
            assert got == m.offer(op[1], count=False)
        elif kind == "py_one":
            rec = synthetic_records(m.next_seq, 1)[0]
            arg = {
                "void": rec,
                "tuple": tuple(rec.tolist()),
                "dict": dict(zip(rec.dtype.names or (), rec.tolist(), strict=True)),
            }
            assert ring.publish(arg[op[1]]) == m.offer(1)
        elif kind == "nat_single":
            pub, drop, *_ = _core._bench_produce(
                ring, op[1], single=True, first_seq=m.next_seq, retry=False
            )
            acc = m.offer(op[1])
            assert (pub, drop) == (acc, op[1] - acc)
        elif kind == "nat_batch":
            pub, drop, *_ = _core._bench_produce(
                ring, op[1], batch=op[2], first_seq=m.next_seq, retry=False
            )
            acc = m.offer(op[1])
            assert (pub, drop) == (acc, op[1] - acc)
        elif kind == "consume":
            j = min(op[1], len(m.q))
            ring.consume(j)
            for _ in range(j):
                m.q.popleft()
            m.consumed += j
        elif kind == "consume_bad":
            with pytest.raises(ValueError):
                ring.consume(len(m.q) + op[1])
        else:  # peek
            a, b = ring.peek(op[1])
            want = list(m.q)[: op[1]] if op[1] is not None else list(m.q)
            assert [int(x) for x in a["seq"]] + [int(x) for x in b["seq"]] == want
            start = m.consumed % cap
            assert len(a) == min(len(want), cap - start)
            assert len(b) == 0 or len(a) == cap - start
            assert check_synthetic(a) == 0 and check_synthetic(b) == 0
        assert ring.pending == len(m.q)
        assert ring.dropped == m.dropped
        assert ring.consumed == m.consumed
    # everything left is intact and in order, however the interleaving went
    a, b = ring.peek()
    got = np.concatenate([a["seq"], b["seq"]])
    assert got.tolist() == list(m.q)
    ring.close()

"""Nothing is lost: random corruptions of a small source are either repaired or quarantined.

Hypothesis corrupts random rows of the clean catalogue agency in random ways. Afterwards every
row is accounted for (extracted = used + quarantined), every row with an unrepairable corruption
is in quarantine, every row with only repairable corruptions is used with its clean values, and
every untouched row is used.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_contract_catalogue import clean_agency, validate, write_sqlite

# name -> (how to corrupt one row's values, whether the documented normalisation repairs it)
REPAIRABLE = {
    "role blanks and case": lambda r: {"role": f"  {r['role'].lower()} "},
    "role spelled out": lambda r: {
        "role": "Registered Nurse" if r["role"] == "RN" else "Licensed Practical Nurse"
    },
    "status upper case": lambda r: {"status": r["status"].upper()},
    "shift_start without offset": lambda r: {"shift_start": r["shift_start"][:19]},
    "requested_at with Z": lambda r: {"requested_at": r["requested_at"].replace("+00:00", "Z")},
    "shift_hours as text": lambda r: {"shift_hours": f" {r['shift_hours']:g} "},
    "shift_start in PostgreSQL's text form": lambda r: {  # 2025-02-05 07:00:00-06
        "shift_start": r["shift_start"].replace("T", " ")[:-3]
    },
    "requested_at with fractional seconds": lambda r: {
        "requested_at": r["requested_at"].replace("+00:00", ".000000+00:00")
    },
}
UNREPAIRABLE = {
    "role not a nurse role": lambda r: {"role": "CNA"},
    "status unknown": lambda r: {"status": "pending"},
    "shift_hours zero": lambda r: {"shift_hours": 0.0},
    "shift_hours too long": lambda r: {"shift_hours": 30.0},
    "shift_hours not a number": lambda r: {"shift_hours": "twelve"},
    "shift_start garbage": lambda r: {"shift_start": "next tuesday"},
    "unknown facility": lambda r: {"facility_id": "F999"},
    "requested long after the shift": lambda r: {  # both well before as_of
        "shift_start": "2025-02-10T07:00:00-06:00",
        "requested_at": "2025-02-15T13:00:00+00:00",
    },
    "cancelled without time": lambda r: {"status": "cancelled", "cancelled_at": None},
    "no request_id": lambda r: {"request_id": None},
    "no role": lambda r: {"role": None},
    "blank shift_start": lambda r: {"shift_start": "  "},
    "no status": lambda r: {"status": ""},
}
KINDS = sorted(REPAIRABLE) + sorted(UNREPAIRABLE)
N_ROWS = len(clean_agency()["shift_requests"])


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    corruptions=st.lists(
        st.tuples(st.integers(0, N_ROWS - 1), st.sampled_from(KINDS)), min_size=1, max_size=25
    )
)
def test_every_corrupted_row_is_repaired_or_quarantined(
    corruptions: list[tuple[int, str]],
) -> None:
    tables = clean_agency()
    requests = tables["shift_requests"].astype(object)
    clean = requests.copy()
    kinds: dict[int, set[str]] = {}
    for row, kind in corruptions:
        change = {**REPAIRABLE, **UNREPAIRABLE}[kind](clean.loc[row])
        for column, value in change.items():
            requests.at[row, column] = value
        kinds.setdefault(row, set()).add(kind)
    tables["shift_requests"] = requests

    with tempfile.TemporaryDirectory() as folder:
        result = validate(write_sqlite(tables, Path(folder) / "ops.db"), max_share=1.0)

    extracted, used, quarantined = result.rows("shift_requests")
    assert extracted == N_ROWS == used + quarantined
    q = result.quarantine[result.quarantine["source_table"] == "shift_requests"]
    quarantined_keys = list(q["source_key"])
    used_frame = result.tables["shift_requests"].set_index("request_id")
    for row in range(N_ROWS):
        request_id = clean.at[row, "request_id"]
        broken = kinds.get(row, set()) & set(UNREPAIRABLE)
        if broken:
            key = f"row {row}" if "no request_id" in broken else request_id
            assert key in quarantined_keys, (row, broken)
            continue
        assert request_id in used_frame.index, (row, kinds.get(row))
        got = used_frame.loc[request_id]
        assert got["role"] == clean.at[row, "role"]
        assert got["status"] == clean.at[row, "status"]
        assert got["shift_hours"] == clean.at[row, "shift_hours"]
        assert got["shift_start"] == pd.Timestamp(clean.at[row, "shift_start"])
        assert got["requested_at"] == pd.Timestamp(clean.at[row, "requested_at"])
    assert len(quarantined_keys) == quarantined

"""Deterministic fleet generation, stored column-wise so a million devices fit in a few MB.

Device ``i`` has the id ``dev-0000042`` (``device_id(i)``), and one small integer per
attribute indexing the tables below.  Device ``i`` with ``i % 100 == 0`` is an internal test
device (customer ``internal``, always-on, low criticality, never a camera), so the first
stage of a plan ("internal devices") exists in every fleet of any size.
"""

from __future__ import annotations

import csv
import random
from array import array
from bisect import bisect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gates.events import DeviceAttributes
from streams.inventory import CSV_COLUMNS
from streams.simulator.profiles import PROFILE_NAMES

__all__ = [
    "CRITICALITIES",
    "CUSTOMERS",
    "GENERATIONS",
    "MODELS",
    "REGIONS",
    "Fleet",
    "device_id",
    "device_index",
    "generate_fleet",
]

MODELS = ("gw-100", "gw-200", "sensor-s1", "sensor-s2", "cam-c1")
GENERATIONS = ("gen1", "gen2", "gen3")  # legacy JSON, Avro v1, Avro v2
REGIONS = ("eu-west", "eu-central", "us-east", "us-west", "ap-south")
CUSTOMERS = ("acme", "globex", "initech", "umbrella", "internal")
CRITICALITIES = ("low", "medium", "high")
_INTERNAL = CUSTOMERS.index("internal")
_INTERNAL_MODELS = (0, 1, 2)  # internal lab: gateways and sensor-s1, no cameras

_MODEL_W = (0.2, 0.2, 0.25, 0.2, 0.15)
# per model: always-on, flaky-cellular, sleepy
_PROFILE_W = ((0.8, 0.2, 0.0), (0.8, 0.2, 0.0), (0.1, 0.3, 0.6), (0.0, 0.5, 0.5), (0.6, 0.4, 0.0))
_GEN_W = (0.1, 0.2, 0.7)
_REGION_W = (0.25, 0.2, 0.25, 0.15, 0.15)
_CUSTOMER_W = (0.35, 0.3, 0.2, 0.15)  # external customers
_CRIT_W = (0.5, 0.35, 0.15)
DEVICES_PER_SITE = 250

_ID_PREFIX = "dev-"


def device_id(i: int) -> str:
    return f"{_ID_PREFIX}{i:07d}"


def device_index(device_id_: str, size: int) -> int:
    """Index of a fleet device id, or -1 when the id is not one of this fleet's."""
    if not device_id_.startswith(_ID_PREFIX):
        return -1
    digits = device_id_[len(_ID_PREFIX) :]
    if not digits.isdigit() or len(digits) < 7:
        return -1
    i = int(digits)
    return i if i < size and device_id(i) == device_id_ else -1


def _and(a: bytes | bytearray, b: bytes | bytearray) -> bytearray:
    """Byte-wise AND of two equally long 0/1 masks (one big-int operation)."""
    n = len(a)
    return bytearray((int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(n, "little"))


def _cum(weights: Sequence[float]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc / sum(weights))
    out[-1] = 1.0
    return out


@dataclass(frozen=True, eq=False)
class Fleet:
    """Column-wise inventory: attribute tables plus one byte (or short) per device."""

    size: int
    seed: int
    model: bytearray
    generation: bytearray
    region: bytearray
    customer: bytearray
    criticality: bytearray
    profile: bytearray
    site: array[int]  # site number within the region
    lot: bytearray  # uniform 0..255 per device: picks deterministic fractions

    _COLUMNS = {
        "model": MODELS,
        "firmware_generation": GENERATIONS,
        "region": REGIONS,
        "customer": CUSTOMERS,
        "criticality": CRITICALITIES,
        "connectivity_profile": PROFILE_NAMES,
    }

    def _column(self, name: str) -> bytearray:
        return {
            "model": self.model,
            "firmware_generation": self.generation,
            "region": self.region,
            "customer": self.customer,
            "criticality": self.criticality,
            "connectivity_profile": self.profile,
        }[name]

    def site_name(self, i: int) -> str:
        return f"{REGIONS[self.region[i]]}-site-{self.site[i]:03d}"

    def attributes(self, i: int) -> DeviceAttributes:
        return DeviceAttributes(
            device_id=device_id(i),
            model=MODELS[self.model[i]],
            firmware_generation=GENERATIONS[self.generation[i]],
            region=REGIONS[self.region[i]],
            customer=CUSTOMERS[self.customer[i]],
            criticality=CRITICALITIES[self.criticality[i]],
            connectivity_profile=PROFILE_NAMES[self.profile[i]],
            site=self.site_name(i),
        )

    def __iter__(self) -> Iterator[DeviceAttributes]:
        return (self.attributes(i) for i in range(self.size))

    def mask(self, selector: Mapping[str, Sequence[str]], fraction: float = 1.0) -> bytearray:
        """1 for devices matching every selector entry (and within `fraction` by lot), else 0."""
        out = bytearray(b"\x01") * self.size
        for name, values in selector.items():
            if name == "site":
                wanted = set(values)
                col = bytes(1 if self.site_name(i) in wanted else 0 for i in range(self.size))
                out = _and(out, col)
                continue
            if name not in self._COLUMNS:
                raise ValueError(f"unknown selector attribute {name!r}")
            table = self._COLUMNS[name]
            keep = bytes(1 if v < len(table) and table[v] in values else 0 for v in range(256))
            out = _and(out, self._column(name).translate(keep))
        if fraction < 1.0:
            limit = round(fraction * 256)
            lots = bytes(1 if v < limit else 0 for v in range(256))
            out = _and(out, self.lot.translate(lots))
        return out

    def select(self, selector: Mapping[str, Sequence[str]], fraction: float = 1.0) -> list[int]:
        return [i for i, m in enumerate(self.mask(selector, fraction)) if m]

    def write_csv(self, path: Path | str) -> int:
        """Write the inventory CSV read by `fleetgate inventory load`; returns the row count."""
        with Path(path).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            for a in self:
                w.writerow([getattr(a, c) for c in CSV_COLUMNS])
        return self.size


def generate_fleet(devices: int, seed: int, generations: Sequence[float] | None = None) -> Fleet:
    """The same fleet for the same (devices, seed); about 1.5 s per million devices.

    ``generations`` replaces the gen1/gen2/gen3 weights (a fleet with more legacy devices).
    """
    if devices < 1:
        raise ValueError("a fleet needs at least one device")
    gen_w = _GEN_W if generations is None else tuple(generations)
    if len(gen_w) != len(GENERATIONS) or min(gen_w) < 0 or sum(gen_w) <= 0:
        raise ValueError(f"generations: expected {len(GENERATIONS)} non-negative weights, got {gen_w}")
    rng = random.Random(f"fleet:{seed}")
    r = rng.random
    cm, cg, cr, cc, ck = (_cum(w) for w in (_MODEL_W, gen_w, _REGION_W, _CUSTOMER_W, _CRIT_W))
    cp = [_cum(w) for w in _PROFILE_W]
    sites_per_region = [max(1, round(devices * w / DEVICES_PER_SITE)) for w in _REGION_W]
    model, gen, region, cust, crit, prof = (bytearray(devices) for _ in range(6))
    site = array("H", bytes(2 * devices))
    lot = bytearray(rng.randbytes(devices))
    for i in range(devices):
        g = bisect(cg, r())
        rg = bisect(cr, r())
        s = int(r() * sites_per_region[rg])
        if i % 100 == 0:
            m = _INTERNAL_MODELS[int(r() * len(_INTERNAL_MODELS))]
            c, k, p = _INTERNAL, 0, 0
        else:
            m = bisect(cm, r())
            c = bisect(cc, r())
            k = bisect(ck, r())
            p = bisect(cp[m], r())
        model[i], gen[i], region[i], cust[i], crit[i], prof[i], site[i] = m, g, rg, c, k, p, s
    return Fleet(devices, seed, model, gen, region, cust, crit, prof, site, lot)

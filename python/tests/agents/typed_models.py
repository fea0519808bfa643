"""An agent script with the definitions agent code is full of: a pydantic model that refers to
itself and a dataclass with a string ClassVar. Both resolve their names through __main__."""

from __future__ import annotations

import dataclasses
import pickle
from typing import ClassVar, List, Optional

import pydantic

import ironhost


class Lead(pydantic.BaseModel):
    name: str
    referred_by: Optional[Lead] = None


@dataclasses.dataclass
class Batch:
    size: ClassVar[int] = 10
    leads: List[str] = dataclasses.field(default_factory=list)


if __name__ == "__main__":
    lead = Lead(name="Acme", referred_by=Lead(name="Globex"))
    assert lead.referred_by is not None and lead.referred_by.name == "Globex"
    # A ClassVar is not a field; the batch pickles by its module's name.
    assert [f.name for f in dataclasses.fields(Batch)] == ["leads"]
    assert pickle.loads(pickle.dumps(Batch(["Acme"]))).leads == ["Acme"]
    ironhost.progress(1, 1, "checks")

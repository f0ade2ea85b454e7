"""Allocation policies by name and parameters (`PolicySpec.parse("aria:beta=2")`), built on a world."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aria_theory.allocation import (AllocationPolicy, AriaPolicy, DoReMiPolicy, Exp3Policy,
                                    PromptSharePolicy, UniformPolicy)
from aria_theory.progress import ProgressPolicy
from simulations.allocation.world import World

_KINDS = {"rc": (), "uniform": (), "aria": ("beta", "eps", "a", "iw", "lag"), "exp3": ("gamma", "eta"),
          "doremi": ("eta", "eps"), "oracle": ("beta", "eps"),
          "oracle_reducible": ("beta", "eps"), "count": ("beta", "eps", "rate"),
          "progress": ("rate", "fast", "slow", "beta", "eps")}
_DEFAULTS = {"beta": 1.0, "eps": 0.2, "a": 0.05, "iw": 0.0, "gamma": 0.1, "eta": None, "fast": 0.05,
             "slow": 0.0, "rate": 0.003, "lag": 0.0}


@dataclass(frozen=True)
class PolicySpec:
    """A policy by kind and parameters, e.g. ``PolicySpec.parse("aria:beta=2:eps=0.2:a=0.05")``."""

    kind: str
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "PolicySpec":
        kind, *pairs = text.strip().split(":")
        if kind not in _KINDS:
            raise ValueError(f"unknown policy {kind!r}; choose from {', '.join(_KINDS)}")
        params = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key not in _KINDS[kind] or not value:
                raise ValueError(f"policy {kind!r} takes {', '.join(_KINDS[kind]) or 'no'} parameters "
                                 f"as key=value, got {pair!r}")
            params[key] = float(value)
        lag = params.get("lag", 0.0)
        if lag < 0 or lag != int(lag):
            raise ValueError(f"policy {kind!r}: lag is a whole number of steps >= 0, got {lag:g}")
        return cls(kind, params)

    def get(self, key: str) -> float | None:
        return self.params.get(key, _DEFAULTS.get(key))

    @property
    def label(self) -> str:
        if self.kind == "aria":
            iw = "-IW" if self.get("iw") else ""
            lag = f" lag={self.get('lag'):g}" if self.get("lag") else ""
            return f"ARIA{iw} b={self.get('beta'):g} e={self.get('eps'):g} a={self.get('a'):g}{lag}"
        if self.kind == "oracle_reducible":
            return f"oracle-reducible b={self.get('beta'):g} e={self.get('eps'):g}"
        if self.kind == "count":
            return f"count-control r={self.get('rate'):g}"
        if self.kind == "oracle":
            return f"oracle b={self.get('beta'):g} e={self.get('eps'):g}"
        if self.kind == "progress":
            steps = "".join(f" {key[0]}={self.get(key):g}" for key in ("fast", "slow")
                            if self.get(key) != _DEFAULTS[key])
            return f"progress r={self.get('rate'):g} b={self.get('beta'):g} e={self.get('eps'):g}{steps}"
        return {"rc": "RC", "uniform": "uniform", "exp3": "EXP3", "doremi": "DoReMi"}[self.kind]

    def build(self, world: World, reference: np.ndarray | None = None) -> AllocationPolicy:
        k = world.num_regions
        if self.kind == "rc":
            return PromptSharePolicy(k, world.shares)
        if self.kind == "uniform":
            return UniformPolicy(k)
        if self.kind in ("aria", "oracle", "oracle_reducible", "count"):
            return AriaPolicy(k, beta=self.get("beta"), eps=self.get("eps"))
        extra = {"eta": self.params["eta"]} if "eta" in self.params else {}
        if self.kind == "progress":
            return ProgressPolicy(k, rate=self.get("rate"), fast=self.get("fast"), slow=self.get("slow"),
                                  beta=self.get("beta"), eps=self.get("eps"))
        if self.kind == "exp3":
            return Exp3Policy(k, gamma=self.get("gamma"), **extra)
        if reference is None:
            raise ValueError("doremi needs a reference discrepancy")
        return DoReMiPolicy(k, reference, eps=self.get("eps"), **extra)


DEFAULT_POLICIES = ("rc", "uniform", "aria:beta=1:eps=0.2:a=0.05", "aria:beta=2:eps=0.2:a=0.05",
                    "aria:beta=1:eps=0.5:a=0.05", "aria:beta=1:eps=0.2:a=0.5",
                    "aria:beta=1:eps=0.2:a=0.05:iw=1", "exp3", "doremi:eta=0.01",
                    "oracle:beta=1:eps=0.2", "progress")
# DoReMi's eta = 0.01 is the best of {1, 0.1, 0.01} on seeds 0-2 of imbalanced, balanced and
# high_floor; with eta = 1 its weights collapse onto one region within a few hundred steps.

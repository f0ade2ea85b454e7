"""The proven core of ARIA: the region tracker, allocation policies, tracking-error bounds and
synthetic discrepancy processes. numpy/scipy only; the trainer imports its tracker from here."""

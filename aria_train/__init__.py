"""The distillation trainer (diffusers + accelerate). It imports the tracker from aria_theory."""

"""Students (BK-SDM block removal) and feature-KD plumbing; see students.py and feature_kd.py."""

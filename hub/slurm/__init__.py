"""The one way this platform talks to Slurm (the base layer; see README, Architecture)."""

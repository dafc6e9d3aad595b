"""`python -m platformctl backups check --stack <stack>`: is every backup the stack declares fresh?

What is expected is the program's: the stack output `backupExpectations` (stacks/backups.py) lists each
backup writer's store, prefix, key pattern and cron schedule. The check lists each prefix (ListObjectsV2:
keys and their LastModified) and fails, one line per backup, when the newest matching object is older than
the schedule's longest interval plus MARGIN, or there is none, or it is dated more than SKEW ahead of the
check's clock. For a Velero Schedule (`outcome` "velero") the newest match is its newest backup's
velero-backup.json, the one object the check reads: the backup's `status.phase` must be Completed (Velero
still uploads a Failed backup, and a PartiallyFailed one lacks objects or volumes). An RDS instance's
automated backups (store "rds", `bucket` its identifier) count as one object dated its LatestRestorableTime,
and as none while they are off; their copy in the copy region (store "rds-copy") as one dated the latest time
its replicated backups restore to. The S3 copy (store "backups-copy") is listed as any bucket; the EBS volumes'
copies (store "ebs-copy": `prefix` the key of the tag they carry, `bucket` its value) count as their completed
snapshots there.

Credentials: an expectation's store (`backups`, `objectStore`) names the AWS profile used for it when one
of that name is configured (kubeconfig stacks: each store's list-only watch key, written by the CI job);
otherwise the default chain (EKS: the watch role through the job's ID token).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from croniter import CroniterBadCronError, croniter

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = "backupExpectations"
# How late a run's object may land after its slot: a backup job may run this long (components/backups.py
# backup_cron_job: starting deadline 1 h, active deadline 6 h), and one margin holds for every writer.
MARGIN = timedelta(hours=7)
# Four years of days: every day of every month occurs, 29 February included (a schedule naming both a day
# of the month and a weekday repeats over 28 years: its longest gap is sampled, not proven).
CYCLE_DAYS = 4 * 366
# How far ahead of the check's clock an object may be dated (the store's clock and the runner's both drift).
# More, and that object would stay "newest" for as long as it is ahead, whatever its writer does: a failure.
SKEW = timedelta(minutes=15)
FIELDS = ("writer", "store", "bucket", "endpoint", "region", "prefix", "pattern", "schedule", "outcome")
# How the newest match says its backup ended, and what it must say: not at all; Velero's velero-backup.json
# (status.phase); barman-cloud's backup.info (status=..., uploaded when a base backup ends).
OUTCOMES = {None: None, "velero": "Completed", "barman": "DONE"}
# Velero's phases of a backup still finishing its plugin operations (CSI snapshots); each ends Completed or
# PartiallyFailed within the backup's itemOperationTimeout (4 h by default), inside MARGIN.
FINISHING = ("WaitingForPluginOperations", "Finalizing")
# The stores that are no bucket: an RDS instance's automated backups, their replicas and the EBS volumes' copies in the
# copy region, and what is missing when there are none.
NOT_BUCKETS = {"rds": "automated backups are off (backup retention 0)", "rds-copy": "no replicated automated backups",
               "ebs-copy": "no completed snapshot copies"}


class CheckError(Exception):
    """Bad input: an unknown stack, missing or malformed outputs."""


@dataclass(frozen=True)
class Expectation:
    writer: str
    store: str
    bucket: str
    endpoint: str | None
    region: str
    prefix: str
    pattern: str
    schedule: str
    outcome: str | None = None

    @property
    def where(self) -> str:
        return f"{self.store}:{self.bucket}" if self.store in NOT_BUCKETS else f"s3://{self.bucket}/{self.prefix}"

    @property
    def max_age(self) -> timedelta:
        return longest_interval(self.schedule) + MARGIN


@lru_cache(maxsize=None)
def longest_interval(schedule: str) -> timedelta:
    """The longest time between two runs of a five-field cron schedule (UTC).

    Every day a schedule runs, it runs at the same times of day; so the longest gap is the longest between
    two of those times, or from a running day's last run to the next running day's first."""
    if len(schedule.split()) != 5:
        raise CheckError(f"schedule {schedule!r} is not a five-field cron schedule (minute hour day month weekday)")
    try:
        minutes, hours, *_ = croniter(schedule).expanded
    except (CroniterBadCronError, ValueError) as err:
        raise CheckError(f"schedule {schedule!r} is not a cron schedule: {err}") from None
    times = sorted(h * 60 + m for h in (range(24) if hours == ["*"] else hours) for m in (range(60) if minutes == ["*"] else minutes))
    first = f"{times[0] % 60} {times[0] // 60} {' '.join(schedule.split()[2:])}"  # one run a day, at the first time
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    runs = croniter(first, start - timedelta(minutes=1))
    days = [runs.get_next(datetime)]
    while days[-1] < start + timedelta(days=CYCLE_DAYS) or len(days) < 2:
        days.append(runs.get_next(datetime))
    within = max((b - a for a, b in zip(times, times[1:])), default=0)
    span = times[-1] - times[0]  # from a day's first run to its last
    between = max((b - a for a, b in zip(days, days[1:])), default=timedelta(0)) - timedelta(minutes=span)
    return max(timedelta(minutes=within), between)


def expectations(outputs: Any, stack: str) -> list[Expectation]:
    """The stack's `backupExpectations`, checked: a clear error for anything else."""
    if not isinstance(outputs, dict) or OUTPUT not in outputs:
        raise CheckError(
            f"stack {stack} has no output {OUTPUT}: it declares no backups (platform:backups unset) or was last "
            f"deployed before the output existed; allowed: a stack deployed with platform:backups by this version (`pulumi up`)")
    entries = outputs[OUTPUT]
    if not isinstance(entries, list) or not entries:
        raise CheckError(f"stack {stack}: output {OUTPUT} lists no backups; allowed: a non-empty list (stacks/backups.py)")
    found = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or sorted(entry) != sorted(FIELDS):
            raise CheckError(f"stack {stack}: {OUTPUT}[{i}] is not an expectation; allowed: a mapping of {', '.join(FIELDS)}")
        try:
            re.compile(entry["pattern"])
        except (re.error, TypeError) as err:
            raise CheckError(f"stack {stack}: {OUTPUT}[{i}].pattern {entry['pattern']!r} is not a regular expression ({err})") from None
        if entry["outcome"] not in OUTCOMES:
            raise CheckError(f"stack {stack}: {OUTPUT}[{i}].outcome {entry['outcome']!r} is unknown; allowed: null, \"velero\", \"barman\"")
        found.append(Expectation(**entry))
    return found


def newest(objects: Iterable[dict[str, Any]], expected: Expectation) -> dict[str, Any] | None:
    """The listed object with the latest LastModified among those whose key after the prefix matches the pattern."""
    pattern = re.compile(expected.pattern)
    return max((o for o in objects if pattern.search(o["Key"][len(expected.prefix):])), key=lambda o: (o["LastModified"], o["Key"]), default=None)


def recorded(outcome: str, body: bytes) -> str:
    """How a backup's record says it ended: a velero-backup.json's `status.phase`, a backup.info's `status` line;
    or what is wrong with the record."""
    if outcome == "barman":
        lines = dict(line.partition("=")[::2] for line in body.decode("utf-8", "replace").splitlines())
        return lines.get("status") or "a backup.info without a status"
    try:
        phase = json.loads(body)["status"]["phase"]
    except (ValueError, KeyError, TypeError):
        return "not a Velero backup's metadata"
    return phase if isinstance(phase, str) else "without a phase"


Lister = Callable[[Expectation], Iterable[dict[str, Any]]]
Reader = Callable[[Expectation, str], bytes]


def store_client(expected: Expectation, profiles: Iterable[str]) -> Any:
    """A client of the expectation's store: with the AWS profile named after the store if there is one (which
    then wins over the environment's web identity), else the default chain."""
    session = boto3.Session(profile_name=expected.store if expected.store in profiles else None, region_name=expected.region)
    if expected.store in NOT_BUCKETS:
        service = "ec2" if expected.store == "ebs-copy" else "rds"
        return session.client(service, config=Config(retries={"mode": "standard"}))
    style = Config(s3={"addressing_style": "path"} if expected.endpoint else {}, retries={"mode": "standard"})
    return session.client("s3", endpoint_url=expected.endpoint, config=style)


class Stores:
    """Lists a prefix (every page) and reads one object with boto3, one client per store; an RDS instance's automated
    backups as one object, dated its LatestRestorableTime (none while they are off)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str | None, str], Any] = {}
        self._profiles = boto3.Session().available_profiles

    def _client(self, expected: Expectation) -> Any:
        key = (expected.store, expected.endpoint, expected.region)
        if key not in self._clients:
            self._clients[key] = store_client(expected, self._profiles)
        return self._clients[key]

    def list(self, expected: Expectation) -> Iterable[dict[str, Any]]:
        if expected.store == "rds":
            [instance] = self._client(expected).describe_db_instances(DBInstanceIdentifier=expected.bucket)["DBInstances"]
            on = instance.get("BackupRetentionPeriod", 0) > 0 and "LatestRestorableTime" in instance
            return [{"Key": expected.bucket, "LastModified": instance["LatestRestorableTime"]}] if on else []
        if expected.store == "rds-copy":
            found = self._client(expected).describe_db_instance_automated_backups(DBInstanceIdentifier=expected.bucket)
            return [{"Key": expected.bucket, "LastModified": backup["RestoreWindow"]["LatestTime"]}
                    for backup in found["DBInstanceAutomatedBackups"] if "LatestTime" in backup.get("RestoreWindow", {})]
        if expected.store == "ebs-copy":
            pages = self._client(expected).get_paginator("describe_snapshots").paginate(
                OwnerIds=["self"], Filters=[{"Name": f"tag:{expected.prefix}", "Values": [expected.bucket]},
                                            {"Name": "status", "Values": ["completed"]}])
            return [{"Key": s["SnapshotId"], "LastModified": s["StartTime"]} for page in pages for s in page["Snapshots"]]
        return self._objects(expected)

    def _objects(self, expected: Expectation) -> Iterable[dict[str, Any]]:
        for page in self._client(expected).get_paginator("list_objects_v2").paginate(Bucket=expected.bucket, Prefix=expected.prefix):
            yield from page.get("Contents", [])

    def read(self, expected: Expectation, key: str) -> bytes:
        return self._client(expected).get_object(Bucket=expected.bucket, Key=key)["Body"].read()


def judge(expected: Expectation, lister: Lister, reader: Reader, now: datetime) -> tuple[bool, str]:
    """(fresh, the backup's line)."""
    allowed = f"allowed {hours(expected.max_age)} (schedule '{expected.schedule}')"
    try:
        latest = newest(lister(expected), expected)
        phase = recorded(expected.outcome, reader(expected, latest["Key"])) if latest is not None and expected.outcome else None
    except (BotoCoreError, ClientError) as err:
        return False, f"UNREADABLE {expected.where} ({expected.writer}): {err}"
    if latest is None:
        what = NOT_BUCKETS.get(expected.store, f"no object matches {expected.pattern}")
        return False, f"MISSING {expected.where} ({expected.writer}): {what}; {allowed}"
    when, age = latest["LastModified"], now - latest["LastModified"]
    if -age > SKEW:
        return False, (f"FUTURE {expected.where} ({expected.writer}): newest {stamp(when)} is {hours(-age)} ahead of this check's clock, "
                       f"more than {hours(SKEW)}: the store's or the runner's clock is wrong, or the object's time was set")
    done = OUTCOMES[expected.outcome]
    if phase != done and not (expected.outcome == "velero" and phase in FINISHING and age <= MARGIN):
        name = latest["Key"].split("/")[-2]
        hint = f" (velero backup describe {name} --details)" if expected.outcome == "velero" else ""
        return False, f"FAILED {expected.where} ({expected.writer}): newest backup {name} is {phase}, not {done}{hint}"
    if age > expected.max_age:
        return False, f"STALE {expected.where} ({expected.writer}): newest {stamp(when)}, {hours(age)} old; {allowed}"
    return True, f"ok {expected.where} ({expected.writer}): newest {stamp(when)}, {hours(age)} old; {allowed}"


def check(found: list[Expectation], lister: Lister, now: datetime, reader: Reader) -> tuple[list[str], list[str]]:
    """(problems, fresh): one line per backup."""
    problems, fresh = [], []
    for expected in found:
        ok, line = judge(expected, lister, reader, now)
        (fresh if ok else problems).append(line)
    return problems, fresh


def hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} h"


def stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stack_outputs(stack: str, outputs_file: str | None) -> Any:
    """The stack's outputs: the file `pulumi stack output --json` wrote, else that command's answer."""
    if outputs_file is not None:
        try:
            return json.loads(Path(outputs_file).read_text())
        except (OSError, ValueError) as err:
            raise CheckError(f"--outputs {outputs_file}: {err}; allowed: the JSON `pulumi stack output --json` prints") from None
    try:
        done = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", stack], capture_output=True, text=True, check=False)
    except OSError as err:
        raise CheckError(f"cannot run the Pulumi CLI ({err}); allowed: pulumi on PATH, or --outputs FILE") from None
    if done.returncode != 0:
        raise CheckError(f"pulumi stack output --stack {stack} failed: {done.stderr.strip()}")
    try:
        return json.loads(done.stdout or "{}")
    except ValueError as err:
        raise CheckError(f"pulumi stack output --stack {stack} printed no JSON ({err})") from None


def run(args: argparse.Namespace, lister: Lister | None = None, now: datetime | None = None, reader: Reader | None = None) -> int:
    known = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    try:
        if args.stack not in known:
            raise CheckError(f"unknown stack {args.stack!r}; allowed: {', '.join(known)} (a Pulumi.<stack>.yaml)")
        found = expectations(stack_outputs(args.stack, args.outputs), args.stack)
        store = Stores()
        problems, fresh = check(found, lister or store.list, now or datetime.now(timezone.utc), reader or store.read)
    except CheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(problems + fresh))
    print(f"{len(found) - len(problems)} of {len(found)} backups of stack {args.stack} fresh")
    return 1 if problems else 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("backups", help="check that every backup the stack declares is fresh")
    commands = parser.add_subparsers(dest="backups_command", required=True)
    checking = commands.add_parser("check", help="list the backup stores; exit 1 when a backup is stale or missing")
    checking.add_argument("--stack", required=True, help="the stack whose outputs say what to expect")
    checking.add_argument("--outputs", metavar="FILE", help="the stack's outputs as `pulumi stack output --json` prints "
                                                             "them (default: run that command)")
    checking.set_defaults(run=run)

#!/usr/bin/env bash
# A real single-node Slurm on this machine, from Debian's packages, for trying the cluster path end to end:
#
#   sudo scripts/local_slurm.sh up      # install (once) munge + slurmctld + slurmd, configure, start; waits for "idle"
#   pg-lab -m hydra/launcher=slurm name=try seed=0,1 total_steps=20000
#   sudo scripts/local_slurm.sh down    # stop the daemons (the configuration stays for the next `up`)
#   scripts/local_slurm.sh status
#
# One node (this machine, as `slurmd -C` describes it), one partition `local`, no accounting (so `sacct` is not
# available and submitit says so once; jobs still complete), proctrack/linuxproc and task/none (no cgroups
# needed, so it runs in a container). It writes /etc/slurm/slurm.conf only when there is none or the one there
# is its own: a machine that already has a Slurm configuration is left alone.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by pg_lab scripts/local_slurm.sh"
STATE=/var/lib/slurm-local
LOGS=/var/log/slurm-local

say() { echo "local_slurm: $*"; }

need_root() { [[ $(id -u) == 0 ]] || { say "run as root (it installs packages and starts daemons)"; exit 1; }; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return
  say "installing munge, slurmctld, slurmd, slurm-client (Debian packages)"
  local pkgs=(munge slurmctld slurmd slurm-client)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
}

write_config() {
  if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and is not ours: using it as it is"; return
  fi
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -1)  # NodeName=<host> CPUs=... RealMemory=...
  mkdir -p "$STATE/ctld" "$STATE/d" "$LOGS" /etc/slurm
  cat >"$CONF" <<EOF
$MARK
ClusterName=pglab
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobRequeue=1
ReturnToService=2
KillWait=30
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  [[ -f /etc/munge/munge.key ]] || { mungekey --create 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.25; done
  say "munged did not start"; exit 1
}

wait_idle() {
  local host state
  host=$(hostname -s)
  for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1)
    case $state in
      idle|mixed|allocated) say "up: node $host is $state"; sinfo; return ;;
      down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  say "the node did not become idle (state: ${state:-none}); see $LOGS"; exit 1
}

up() {
  need_root
  if sinfo -h >/dev/null 2>&1 && [[ -n $(sinfo -h -o %T | grep -E 'idle|mixed|alloc') ]]; then say "already up"; sinfo; return; fi
  install_packages
  write_config
  start_munge
  pgrep -x slurmctld >/dev/null || slurmctld -c   # -c: a clean queue, not jobs left from an earlier `up`
  pgrep -x slurmd >/dev/null || slurmd
  wait_idle
}

down() {
  need_root
  # a throw-away cluster: cancel every job first (with proctrack/linuxproc, stopping slurmd would leave them running)
  local jobs
  jobs=$(squeue -h -o %i 2>/dev/null || true)
  if [[ -n $jobs ]]; then
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 80); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
  fi
  scontrol shutdown >/dev/null 2>&1 || true   # slurmctld and slurmd stop
  for d in slurmd slurmctld; do
    for _ in $(seq 20); do pgrep -x $d >/dev/null || break; sleep 0.25; done
    pkill -x $d 2>/dev/null || true
  done
  say "down (configuration kept in $CONF; state in $STATE)"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) sinfo && squeue ;;
  *) echo "usage: $0 up|down|status"; exit 2 ;;
esac

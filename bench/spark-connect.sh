#!/usr/bin/env bash
# A local Spark Connect server for the Spark engine's tests and benchmark, from the `pyspark`
# wheel's own jars (no Spark download): `start` installs what is missing (Java 17, pyspark in a
# venv), starts the server and waits until it listens; `stop` stops it; `status` says whether
# it runs; `python` prints the venv's python (for the PySpark benchmark jobs).
#
#   bash bench/spark-connect.sh start     # sc://127.0.0.1:15002 (RUNNER_SPARK_PORT to change)
#   bash bench/spark-connect.sh stop
#
# Environment: RUNNER_SPARK_PORT (15002), RUNNER_SPARK_CORES (2: Spark's local[N]),
# RUNNER_SPARK_VENV (bench/.venv-spark), PYSPARK_VERSION (4.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${RUNNER_SPARK_PORT:-15002}
cores=${RUNNER_SPARK_CORES:-2}
venv=${RUNNER_SPARK_VENV:-bench/.venv-spark}
version=${PYSPARK_VERSION:-4.0.1}
state=${RUNNER_SPARK_STATE:-${TMPDIR:-/tmp}/runner-spark-connect-$port}
pidfile=$state/pid
log=$state/server.log

need_java() {
  if java -version 2>&1 | grep -q 'version "17'; then return; fi
  echo "spark-connect: installing Java 17 (openjdk-17-jre-headless)" >&2
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq openjdk-17-jre-headless >/dev/null
}

need_pyspark() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import pyspark, sys; sys.exit(pyspark.__version__ != '$version')" 2>/dev/null; then
    return
  fi
  echo "spark-connect: installing pyspark $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "pyspark[connect]==$version"
}

# Installs what is missing, one script at a time: .ci/run starts two servers at once, and two
# pip installs into one venv break each other.
install_once() {
  local lock=${TMPDIR:-/tmp}/runner-spark-connect-install.lock
  exec 9>"$lock"
  flock 9
  need_java
  need_pyspark
  flock -u 9
  exec 9>&-
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
  if running; then
    echo "spark-connect: already running (pid $(cat "$pidfile")) on sc://127.0.0.1:$port"
    return
  fi
  install_once
  mkdir -p "$state"
  local spark_home jar
  spark_home=$("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')
  jar=$(ls "$spark_home"/jars/spark-connect_*.jar | head -n1)
  : >"$log"
  # Its own process group, so that `stop` ends the JVM and spark-submit's shell together.
  SPARK_HOME=$spark_home SPARK_LOCAL_IP=127.0.0.1 setsid "$spark_home/bin/spark-submit" \
    --class org.apache.spark.sql.connect.service.SparkConnectServer \
    --master "local[$cores]" \
    --conf spark.connect.grpc.binding.port="$port" \
    --conf spark.connect.grpc.binding.address=127.0.0.1 \
    --conf spark.ui.enabled=false \
    --conf spark.sql.shuffle.partitions="$cores" \
    --conf spark.driver.memory=1g \
    "$jar" >"$log" 2>&1 &
  echo $! >"$pidfile"
  # Wait for the server's own line, not for a fixed time; give up after 5 minutes.
  local waited=0
  until grep -q 'Spark Connect server started' "$log"; do
    if ! running; then
      echo "spark-connect: the server exited; its log:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
    if [ "$waited" -ge 3000 ]; then
      echo "spark-connect: no 'server started' line after 5 minutes; its log:" >&2
      tail -n 40 "$log" >&2
      stop
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "spark-connect: listening on sc://127.0.0.1:$port (log: $log)"
}

stop() {
  if running; then
    local pid
    pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running on sc://127.0.0.1:$port"; else echo "stopped"; exit 1; fi ;;
  python) need_pyspark; echo "$venv/bin/python" ;;
  *) echo "usage: $0 start|stop|status|python" >&2; exit 2 ;;
esac

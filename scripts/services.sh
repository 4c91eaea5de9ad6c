#!/usr/bin/env bash
# Make sure the services the tests use are up on loopback: PostgreSQL (5432) and Redis
# (6379). Starts a stopped one where this machine knows how; otherwise says what to do.
set -uo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

wait_for() {  # wait_for NAME CHECK
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  echo "services: $1 did not come up" >&2
  return 1
}

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    wait_for PostgreSQL pg_up || exit 1
  else
    echo "services: PostgreSQL is not reachable on 127.0.0.1:5432; start it (user postgres, trust auth) or set NOTIFIER_TEST_PG_ADMIN" >&2
    exit 1
  fi
fi

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    wait_for Redis redis_up || exit 1
  else
    echo "services: Redis is not reachable on 127.0.0.1:6379 (only the Redis bus tests need it)" >&2
  fi
fi
echo "services: PostgreSQL and Redis are up"

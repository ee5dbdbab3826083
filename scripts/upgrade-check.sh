#!/usr/bin/env bash
# Upgrade check: a store written by an earlier build (OLD, for example one
# built from 0c26c61, before the storage redesign, or from the previous
# release) opens with this build (NEW) and keeps every order. Arguments after
# the variables go to both `up`s, for example `--database-url
# postgres://.../upgrade_check` with a new, empty database; since `--fresh`
# empties SQLite directories only, set FRESH to another flag of `up` then
# (FRESH=--log-format=text).
set -uo pipefail
OLD=${OLD:?the stockroom binary of an earlier build}
NEW=${NEW:-target/debug/stockroom}
DB_ARGS=("$@")
DIR=$(mktemp -d)
PORTS=(--order-port 4101 --data-port 4102 --inventory-port 4103 --payment-port 4104 --dashboard-port 4100)
start() { # binary, extra args
  "$1" up --data-dir "$DIR" "${PORTS[@]}" "${DB_ARGS[@]}" "${@:2}" > "$DIR/up.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 120); do grep -q "stockroom ready" "$DIR/up.log" && return 0; sleep 0.5; done
  echo "did not start"; cat "$DIR/up.log"; exit 1
}
stop() { kill -TERM $PID; wait $PID; }
start $OLD ${FRESH:---fresh}
for i in $(seq 1 12); do
  curl -s -o /dev/null -X POST localhost:4101/api/orders -H 'content-type: application/json' \
    -H "Idempotency-Key: upgrade-key-$i" \
    -d "{\"customerId\":\"customer-$i\",\"items\":[{\"productName\":\"Laptop\",\"quantity\":1}]}"
done
sleep 3
curl -s "localhost:4102/orders?limit=500" -H "Authorization: Bearer x" > /dev/null
TOKEN_HDR=()
BEFORE=$(curl -s "localhost:4101/api/orders?limit=100" ; true)
# A replay before the upgrade, for its order id.
REPLAY_OLD=$(curl -s -X POST localhost:4101/api/orders -H 'content-type: application/json' -H "Idempotency-Key: upgrade-key-3" \
    -d '{"customerId":"customer-3","items":[{"productName":"Laptop","quantity":1}]}')
INV_OLD=$(curl -s localhost:4102/inventory)
stop
start $NEW
REPLAY_NEW=$(curl -s -X POST localhost:4101/api/orders -H 'content-type: application/json' -H "Idempotency-Key: upgrade-key-3" \
    -d '{"customerId":"customer-3","items":[{"productName":"Laptop","quantity":1}]}')
INV_NEW=$(curl -s localhost:4102/inventory)
echo "replay before: $REPLAY_OLD"
echo "replay after:  $REPLAY_NEW"
echo "inventory before: $INV_OLD"
echo "inventory after:  $INV_NEW"
OPTOKEN=$(cat "$DIR/operator-token" 2>/dev/null)
$NEW check --order-url http://127.0.0.1:4101 --data-url http://127.0.0.1:4102 --operator-token "$OPTOKEN" --stuck-after-ms 1000 2>&1 | tail -25
echo "check exit: ${PIPESTATUS[0]}"
curl -s "localhost:4102/inventory/Laptop/movements?limit=5" -H "Authorization: Bearer $OPTOKEN" | head -c 600; echo
stop

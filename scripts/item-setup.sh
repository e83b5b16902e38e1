# Sourced by item-instructions.sh and item-rates.sh: with BIN_DIR in $1 (default
# target/release), makes database $ITEM_DB (default item_instructions) with 200 projects
# through the dev runner, writes their ids to `ids` and a wrk script `ids.lua` (requests
# `prefix .. id`, prefix set by the caller) in a temporary directory it changes into, and
# defines `dev` (starts the dev runner) and `token` (an admin's access token from it).
# Checks that the commands in $ITEM_TOOLS exist.
bin=$(realpath "${1:-target/release}")
db=${ITEM_DB:-item_instructions}
url=postgres://postgres@127.0.0.1/$db
work=$(mktemp -d)
trap 'pkill -INT -f "$bin/chronicle" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
for tool in $ITEM_TOOLS; do
    command -v $tool > /dev/null || { echo "needs $tool" >&2; exit 2; }
done
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"

dev() {
    DATABASE_URL=$url RUST_LOG=warn COMMAND_API_ADDR=127.0.0.1:18180 \
        QUERY_API_ADDR=127.0.0.1:18181 PROJECTOR_ADDR=127.0.0.1:18182 \
        setsid "$bin/chronicle" > dev.log 2>&1 &
    for _ in $(seq 100); do
        curl -sf http://127.0.0.1:18180/readyz > /dev/null && return
        sleep 0.3
    done
    echo "the dev runner did not start: $(tail -3 dev.log)" >&2
    exit 1
}
token() {
    curl -sf -H 'content-type: application/json' \
        -d '{"email":"admin@chronicle.test","password":"chronicle-dev-admin"}' \
        http://127.0.0.1:18180/api/v1/auth/login |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

dev
TOKEN=$(token)
for i in $(seq 200); do
    id=$(cat /proc/sys/kernel/random/uuid)
    curl -sf -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"id\":\"$id\",\"name\":\"project $i\",\"description\":\"measured by callgrind\"}" \
        http://127.0.0.1:18180/api/v1/projects
    echo "$id" >> ids
done
for _ in $(seq 100); do
    [ "$(psql -h 127.0.0.1 -U postgres -d $db -Atc 'SELECT count(*) FROM projects')" = 200 ] && break
    sleep 0.2
done
pkill -INT -f "$bin/chronicle"
sleep 2

cat > ids.lua <<'EOF'
local ids = {}
for line in io.lines("ids") do ids[#ids + 1] = line end
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", prefix .. ids[(i % #ids) + 1])
end
EOF

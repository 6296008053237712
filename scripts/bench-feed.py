#!/usr/bin/env python3
"""Load benchmark of posts, the feed and votes on PostgreSQL (`just bench-feed`).

Seeds a fresh database with 1 000 users, 100 000 posts and 1 000 000 votes, starts the release
binary on it, and measures with wrk: feed page 1, the feed page at depth 5 000, a single post,
creating posts and voting. The ceiling is the same feed SQL run straight through pgbench with
as many clients; the script also measures that SQL with vote totals aggregated per page instead
of read from the counters (docs/decisions.md, 22). The figures, with the machine's core count,
replace the marked section of docs/benchmarks.md.

Needs: a release build (`cargo build --release -p moments`), wrk, pgbench, psql, PostgreSQL at
MOMENTS_BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_URL = os.environ.get("MOMENTS_BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
DB = "moments_bench"
DB_URL = ADMIN_URL.rsplit("/", 1)[0] + "/" + DB
LISTEN = "127.0.0.1:18088"
BASE = f"http://{LISTEN}"
BINARY = os.path.join(ROOT, "target", "release", "moments")
DURATION = os.environ.get("MOMENTS_BENCH_SECONDS", "10")
CONNECTIONS = os.environ.get("MOMENTS_BENCH_CONNECTIONS", "16")
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "bench-password-correct-horse"

SEED = """
ALTER TABLE votes DISABLE TRIGGER votes_count;
INSERT INTO users (id, username, email, email_key, created_at, updated_at)
SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       'seed_' || u, 'seed_' || u || '@example.com', 'seed_' || u || '@example.com', now(), now()
FROM generate_series(1, 1000) AS u;
INSERT INTO user_roles (user_id, role_name, granted_at)
SELECT id, 'user', now() FROM users WHERE username LIKE 'seed\\_%';
INSERT INTO posts (id, author_id, content, media_urls, created_at, updated_at)
SELECT ('00000000-0001-7000-8000-' || lpad(to_hex(p), 12, '0'))::uuid,
       ('00000000-0000-7000-8000-' || lpad(to_hex(1 + p % 1000), 12, '0'))::uuid,
       'Seeded post number ' || p || ': a few words of plain text, as people write them.',
       CASE WHEN p % 4 = 0 THEN '["https://cdn.example.com/a.png"]'::jsonb ELSE '[]'::jsonb END,
       now() - (100000 - p) * interval '1 minute', now() - (100000 - p) * interval '1 minute'
FROM generate_series(1, 100000) AS p;
INSERT INTO votes (post_id, user_id, value, voted_at)
SELECT ('00000000-0001-7000-8000-' || lpad(to_hex(1 + (u * 7919 + k * 104729) % 100000), 12, '0'))::uuid,
       ('00000000-0000-7000-8000-' || lpad(to_hex(u), 12, '0'))::uuid,
       CASE WHEN (u + k) % 5 = 0 THEN -1 ELSE 1 END, now()
FROM generate_series(1, 1000) AS u, generate_series(1, 1000) AS k;
UPDATE posts p SET upvotes = t.up, downvotes = t.down
FROM (SELECT post_id, count(*) FILTER (WHERE value = 1) AS up,
             count(*) FILTER (WHERE value = -1) AS down
      FROM votes GROUP BY post_id) t
WHERE p.id = t.post_id;
ALTER TABLE votes ENABLE TRIGGER votes_count;
VACUUM ANALYZE;
"""

# The feed statement the PostgreSQL adapter sends for an anonymous first page of 20 (limit + 1),
# its parameters written in (a first page starts after the last second of year 9999).
FEED_SQL = """SELECT p.id, p.content, p.media_urls, p.created_at, p.updated_at, p.upvotes, p.downvotes,
 u.id, u.username, u.display_name, v.value
FROM posts p INNER JOIN users u ON u.id = p.author_id
LEFT OUTER JOIN votes v ON v.post_id = p.id AND v.user_id = '00000000-0000-0000-0000-000000000000'
WHERE u.disabled = false AND p.created_at <= '9999-12-31 23:59:59+00'
 AND (p.created_at < '9999-12-31 23:59:59+00' OR p.id < 'ffffffff-ffff-ffff-ffff-ffffffffffff')
ORDER BY p.created_at DESC, p.id DESC LIMIT 21;
"""

# The alternative: totals aggregated from the votes of each post on the page.
FEED_AGGREGATED_SQL = """SELECT p.id, p.content, p.media_urls, p.created_at, p.updated_at, t.up, t.down,
 u.id, u.username, u.display_name, v.value
FROM posts p INNER JOIN users u ON u.id = p.author_id
LEFT OUTER JOIN votes v ON v.post_id = p.id AND v.user_id = '00000000-0000-0000-0000-000000000000'
CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE value = 1) AS up,
                           count(*) FILTER (WHERE value = -1) AS down
                    FROM votes w WHERE w.post_id = p.id) t
WHERE u.disabled = false AND p.created_at <= '9999-12-31 23:59:59+00'
 AND (p.created_at < '9999-12-31 23:59:59+00' OR p.id < 'ffffffff-ffff-ffff-ffff-ffffffffffff')
ORDER BY p.created_at DESC, p.id DESC LIMIT 21;
"""


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-f", "-"], input=sql, text=True,
                   check=True, stdout=subprocess.DEVNULL)


def http(method, path, body=None, token=None):
    req = urllib.request.Request(BASE + path, method=method)
    if body is not None:
        req.add_header("content-type", "application/json")
        req.data = json.dumps(body).encode()
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req) as res:
        return json.loads(res.read() or b"null")


def wrk(label, path, script=None, token=None):
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", script]
    cmd.append(BASE + path)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"{label}: {errors.group(1)} failed responses\n{out}")
    print(f"{label}: {rps:.0f} req/s, p50 {p50}, p99 {p99}", flush=True)
    return {"label": label, "rps": rps, "p50": p50, "p99": p99}


def pgbench(label, sql):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(sql)
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", f"-c{CONNECTIONS}", "-j2", f"-T{DURATION}", "-f", f.name, DB_URL],
        check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    latency = re.search(r"latency average = ([\d.]+ ms)", out).group(1)
    print(f"{label}: {tps:.0f} tx/s, latency {latency}", flush=True)
    return {"label": label, "rps": tps, "p50": latency, "p99": "-"}


def main():
    if not os.path.exists(BINARY):
        sys.exit("build first: cargo build --release -p moments")
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {DB}")
    psql(ADMIN_URL, f"CREATE DATABASE {DB}")
    env = dict(os.environ, DATABASE_URL=DB_URL, MOMENTS_JWT_SECRET=SECRET, MOMENTS_LISTEN=LISTEN,
               MOMENTS_ENV="production", MOMENTS_LOG_FORMAT="json", RUST_LOG="warn",
               MOMENTS_DATABASE_POOL_SIZE="16",
               # One client from one address: lift the per-class quotas out of the way (the
               # in-process limiter still runs on every request).
               **{f"MOMENTS_RATE_LIMIT_{c}": "1000000/1s"
                  for c in ("LOGIN", "REGISTER", "REFRESH", "READ", "WRITE", "UPLOAD")})
    subprocess.run([BINARY, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.time()
    psql(DB_URL, SEED)
    print(f"seeded 1 000 users, 100 000 posts, 1 000 000 votes in {time.time() - started:.0f} s")
    subprocess.run([BINARY, "admin", "create-user", "--username", "bencher", "--email",
                    "bencher@example.com", "--password-stdin"], env=env, check=True,
                   input=PASSWORD, text=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([BINARY, "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(BASE + "/ready")
                break
            except OSError:
                time.sleep(0.1)
        token = http("POST", "/api/v1/auth/login",
                     {"login": "bencher", "password": PASSWORD})["access_token"]
        # The cursor of the page at depth 5 000 (posts 99 981..100 000 of 100 000, 20 a page).
        cursor, seen = None, 0
        while seen < 99_980:
            limit = min(100, 99_980 - seen)
            path = f"/api/v1/posts?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
            page = http("GET", path)
            seen += len(page["items"])
            cursor = page["next_cursor"]
        deep = http("GET", f"/api/v1/posts?cursor={cursor}")
        assert len(deep["items"]) == 20 and deep["next_cursor"] is None, "depth 5 000 is the last page"
        post_ids = [p["id"] for p in http("GET", "/api/v1/posts?limit=100")["items"]]
        scripts = tempfile.mkdtemp()
        create = os.path.join(scripts, "create.lua")
        with open(create, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    'wrk.body = \'{"content": "A benchmark post <b>with</b> a little markup."}\'\n')
        vote = os.path.join(scripts, "vote.lua")
        with open(vote, "w") as f:
            f.write("local ids = {" + ",".join(f'"{i}"' for i in post_ids) + "}\nlocal n = 0\n"
                    "request = function()\n  n = n + 1\n"
                    "  local body = '{\"value\": ' .. ((n % 2 == 0) and '1' or '-1') .. '}'\n"
                    "  return wrk.format('PUT', '/api/v1/posts/' .. ids[n % #ids + 1] .. '/vote',"
                    " {['Content-Type'] = 'application/json', ['Authorization'] = '"
                    + f"Bearer {token}" + "'}, body)\nend\n")
        results = [
            pgbench("feed SQL through pgbench (ceiling)", FEED_SQL),
            pgbench("feed SQL, totals aggregated per page", FEED_AGGREGATED_SQL),
            wrk("GET /api/v1/posts (page 1)", "/api/v1/posts"),
            wrk("GET /api/v1/posts (depth 5 000)", f"/api/v1/posts?cursor={cursor}"),
            wrk("GET /api/v1/posts (page 1, signed in)", "/api/v1/posts", token=token),
            wrk("GET /api/v1/posts/{id}", f"/api/v1/posts/{post_ids[7]}"),
            wrk("POST /api/v1/posts", "/api/v1/posts", script=create, token=token),
            wrk("PUT /api/v1/posts/{id}/vote", "/api/v1/posts", script=vote),
        ]
    finally:
        server.terminate()
        server.wait()
    write_report(results)


def to_ms(text):
    value, unit = re.match(r"([\d.]+)\s*(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def write_report(results):
    cores = os.cpu_count()
    ceiling, aggregated, page1, deep = (r["rps"] for r in results[:4])
    lines = [
        "<!-- feed-bench:start -->",
        f"Measured by `just bench-feed` on {time.strftime('%Y-%m-%d')}: {cores} cores shared by "
        f"PostgreSQL, the server and wrk/pgbench; release build; {CONNECTIONS} connections, "
        f"{DURATION} s each; 1 000 users, 100 000 posts, 1 000 000 votes.",
        "",
        "| what | throughput | p50 | p99 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['label']} | {r['rps']:.0f}/s | {r['p50']} | {r['p99']} |" for r in results]
    lines += [
        "",
        f"- Feed route against the pgbench ceiling of its own SQL: {100 * page1 / ceiling:.0f} %.",
        f"- Page at depth 5 000 against page 1: {to_ms(results[3]['p50']) / to_ms(results[2]['p50']):.2f} "
        f"times the median latency (throughput {deep:.0f}/s against {page1:.0f}/s).",
        f"- Counters against aggregating each page's votes: {ceiling:.0f} against "
        f"{aggregated:.0f} queries/s ({ceiling / aggregated:.1f} times).",
        "<!-- feed-bench:end -->",
    ]
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    text = open(path).read()
    block = "\n".join(lines)
    if "<!-- feed-bench:start -->" in text:
        text = re.sub(r"<!-- feed-bench:start -->.*<!-- feed-bench:end -->", lambda _: block, text,
                      flags=re.S)
    else:
        text += "\n## Posts, the feed and votes (load)\n\n" + block + "\n"
    open(path, "w").write(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

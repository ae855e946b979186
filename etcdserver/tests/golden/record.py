#!/usr/bin/env python3
"""Fills in the answers of the golden scripts from etcd 3.6.16.

    etcdserver/tests/golden/record.py [SCRIPT...]

Starts a fresh etcd (HUB_ETCD36, or ~/.cache/hub-etcd/v3.6.16/etcd, which
tests/etcd36/build.sh builds) for each script, sends its requests in order to
etcd's JSON gateway and writes each answer under its request as `=> JSON`
(the header cut to the revision) or `=> error: TEXT`. Run it when a script
changes; the test (tests/golden.rs) then holds hub to what etcd answered.
"""
import http.client, json, os, socket, subprocess, sys, tempfile, time, urllib.request, urllib.error

PATHS = {
    "put": "/v3/kv/put", "range": "/v3/kv/range", "delete": "/v3/kv/deleterange", "txn": "/v3/kv/txn",
    "compact": "/v3/kv/compaction", "lease_grant": "/v3/lease/grant", "lease_revoke": "/v3/lease/revoke",
    "lease_time_to_live": "/v3/lease/timetolive",
    "auth_enable": "/v3/auth/enable", "auth_disable": "/v3/auth/disable",
    "user_add": "/v3/auth/user/add", "user_get": "/v3/auth/user/get", "user_list": "/v3/auth/user/list",
    "user_delete": "/v3/auth/user/delete", "user_change_password": "/v3/auth/user/changepw",
    "user_grant_role": "/v3/auth/user/grant", "user_revoke_role": "/v3/auth/user/revoke",
    "role_add": "/v3/auth/role/add", "role_get": "/v3/auth/role/get", "role_list": "/v3/auth/role/list",
    "role_delete": "/v3/auth/role/delete", "role_grant_permission": "/v3/auth/role/grant",
    "role_revoke_permission": "/v3/auth/role/revoke",
}

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def post(url, body):
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())

def cut(answer):
    """An answer as the scripts hold it: an error's text, or the JSON with its header cut to the revision."""
    if "code" in answer and "message" in answer and len(answer) <= 3:
        return "=> error: " + answer["message"]
    if isinstance(answer.get("header"), dict):
        answer["header"] = {k: v for k, v in answer["header"].items() if k == "revision"}
    return "=> " + json.dumps(answer, separators=(",", ":"))

def watch(port, body):
    """A watch stream through the gateway, opened with one request: its response, read line by line."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    conn.request("POST", "/v3/watch", body=body)
    return conn.getresponse()

def watch_next(stream):
    """The stream's next response, or None when nothing comes within the timeout."""
    try:
        line = stream.readline()
    except (socket.timeout, TimeoutError):
        return None
    answer = json.loads(line)
    return answer.get("result", answer)

def record(script, etcd):
    with tempfile.TemporaryDirectory() as d:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        proc = subprocess.Popen([etcd, "--data-dir", d, "--listen-client-urls", url, "--advertise-client-urls", url,
                                 "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
                                 f"http://127.0.0.1:{peer}", "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    if post(url + "/v3/kv/range", '{"key":"AA=="}').get("header"):
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            out = []
            streams = []
            for line in open(script).read().splitlines():
                if line.startswith("=> "):
                    continue
                out.append(line)
                words = line.strip().split(" ", 1)
                if not line.strip() or line.startswith("#"):
                    continue
                if words[0] == "watch":
                    streams.append(watch(client, words[1]))
                    answer = watch_next(streams[-1])
                elif words[0] == "watch_next":
                    answer = watch_next(streams[-1])
                else:
                    answer = post(url + PATHS[words[0]], words[1] if len(words) > 1 else "{}")
                out.append("=> none" if answer is None else cut(answer))
            open(script, "w").write("\n".join(out) + "\n")
        finally:
            for stream in streams:
                stream.close()
            proc.kill(); proc.wait()

etcd = os.environ.get("HUB_ETCD36") or os.path.expanduser("~/.cache/hub-etcd/v3.6.16/etcd")
here = os.path.dirname(os.path.abspath(__file__))
scripts = sys.argv[1:] or sorted(os.path.join(here, f) for f in os.listdir(here) if f.endswith(".txt"))
for s in scripts:
    record(s, etcd)
    print("recorded", s)

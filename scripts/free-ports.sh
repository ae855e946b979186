# Sourced by the test and bench scripts that start servers on loopback.
# free_ports N: N distinct loopback ports free right now, as testkit's free_port
# picks them: below the kernel's ephemeral range (32768+), so an outgoing
# connection cannot take one between this check and the server's bind, and
# never one port twice (asking the kernel for port 0 once per port can).
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
ports = []
while len(ports) < int(sys.argv[1]):
    port = random.randrange(10_000, 30_000)
    if port in ports:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    ports.append(port)
print(" ".join(map(str, ports)))
PY
}

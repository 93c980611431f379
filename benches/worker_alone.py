"""The smallest master: drives a real buildbot-worker over the msgpack WebSocket protocol
with N `true` commands, C in flight, answering every frame at once, and prints commands per
second. It shows what the worker alone can do, without moonbot's engine and database.

    /var/tmp/moonbot-worker-venv/bin/python benches/worker_alone.py PORT &
    buildbot-worker create-worker --protocol msgpack_experimental_v7 DIR 127.0.0.1:PORT w pw
    (cd DIR && twistd --nodaemon --no_save --pidfile= -y buildbot.tac)

Environment: N, C, ARGS (JSON merged into start_command's args, e.g. '{"logEnviron": false}'),
QUICKACK=1 (re-arm TCP_QUICKACK after each read, as moonbot does), TRACE=FILE (the frames'
times). Run both under `chrt -f 20` to measure without the machine's other load."""
import asyncio, base64, hashlib, os, struct, sys, time, msgpack, json

N = int(os.environ.get("N", "400")); C = int(os.environ.get("C", "4"))
ARGS = json.loads(os.environ.get("ARGS", "{}"))
PORT = int(sys.argv[1])
done = asyncio.Event()
trace = []

async def read_frame(r):
    h = await r.readexactly(2)
    ln = h[1] & 0x7f
    if ln == 126: ln = struct.unpack(">H", await r.readexactly(2))[0]
    elif ln == 127: ln = struct.unpack(">Q", await r.readexactly(8))[0]
    mask = await r.readexactly(4) if h[1] & 0x80 else None
    data = bytearray(await r.readexactly(ln))
    if mask:
        for i in range(ln): data[i] ^= mask[i % 4]
    return h[0] & 0x0f, bytes(data)

def frame(payload):
    n = len(payload)
    if n < 126: h = bytes([0x82, n])
    elif n < 65536: h = bytes([0x82, 126]) + struct.pack(">H", n)
    else: h = bytes([0x82, 127]) + struct.pack(">Q", n)
    return h + payload

async def handle(r, w):
    req = b""
    while not req.endswith(b"\r\n\r\n"): req += await r.read(1)
    key = [l.split(b":",1)[1].strip() for l in req.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    seq = [0]; waiters = {}; cmds = {}
    def send(m):
        w.write(frame(msgpack.packb(m)))
    async def request(op, **kw):
        seq[0] += 1; s = seq[0]
        f = asyncio.get_running_loop().create_future(); waiters[s] = f
        send(dict(op=op, seq_number=s, **kw)); return await f
    sock = w.get_extra_info('socket')
    import socket
    quick = bool(os.environ.get("QUICKACK"))
    async def reader():
        while True:
            op, data = await read_frame(r)
            if quick: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if op != 2: continue
            m = msgpack.unpackb(data, raw=False)
            t = time.perf_counter()
            if m["op"] == "response":
                waiters.pop(m["seq_number"]).set_result(m.get("result"))
            else:
                cid = m.get("command_id")
                trace.append((t, m["op"], cid))
                send(dict(op="response", seq_number=m["seq_number"], result=None))
                if m["op"] == "complete": cmds.pop(cid).set_result(t)
    asyncio.create_task(reader())
    info = await request("get_worker_info")
    await request("set_worker_settings", args=dict(newline_re=r"(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)", max_line_length=4096, buffer_timeout=5, buffer_size=65536))
    base = info["basedir"]
    sem = asyncio.Semaphore(C); nid = [0]
    async def one(i):
        async with sem:
            nid[0] += 1; cid = str(nid[0])
            f = asyncio.get_running_loop().create_future(); cmds[cid] = f
            args = dict(workdir=os.path.join(base, f"b{i%4}", "build"), command=["true"], env={}, want_stdout=True, want_stderr=True, logfiles={}, usePTY=False, logEnviron=True)
            args.update(ARGS)
            t0 = time.perf_counter(); trace.append((t0, "start_command", cid))
            await request("start_command", command_id=cid, command_name="shell", args=args)
            t1 = time.perf_counter(); trace.append((t1, "started", cid))
            t2 = await f
            return t1 - t0, t2 - t0
    t = time.perf_counter()
    res = await asyncio.gather(*(one(i) for i in range(N)))
    el = time.perf_counter() - t
    res.sort(key=lambda x: x[1])
    print(f"N={N} C={C} ARGS={ARGS}: {N/el:.1f} commands/s; start answered median {sorted(x[0] for x in res)[N//2]*1000:.1f} ms, complete median {res[N//2][1]*1000:.1f} ms p90 {res[N*9//10][1]*1000:.1f}")
    if os.environ.get("TRACE"):
        t0 = trace[0][0]
        with open(os.environ["TRACE"], "w") as f:
            off = time.time() - time.perf_counter()
            for t, op, cid in trace: f.write(f"{(t-t0)*1000:9.2f} {t+off:.6f} {op} {cid}\n")
    done.set()

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", PORT)
    await done.wait()
asyncio.run(main())

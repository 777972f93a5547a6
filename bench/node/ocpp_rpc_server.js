#!/usr/bin/env node
// A comparison server for bench/bench_throughput.py: a central system on the Node.js ocpp-rpc
// package in strict mode (every CALL and every reply validated against the OCPP 1.6 / 2.0.1 JSON
// schemas, the Node counterpart of bench/bare_ocpp.py). Trivial handlers, no storage, no auth:
// any identity is accepted, like the bare Python servers.
//
//   node bench/node/ocpp_rpc_server.js --port 0     # prints "PORT <n>" once listening
//
// Stops cleanly on SIGTERM or SIGINT.
'use strict';

const { RPCServer } = require('ocpp-rpc');

function parsePort(argv) {
    const i = argv.indexOf('--port');
    const port = i >= 0 ? Number(argv[i + 1]) : 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
        console.error(`ocpp_rpc_server: --port must be an integer 0-65535, got ${argv[i + 1]}`);
        process.exit(2);
    }
    return port;
}

const now = () => new Date().toISOString();

async function main() {
    const server = new RPCServer({
        protocols: ['ocpp2.0.1', 'ocpp1.6'],
        strictMode: true,            // validate both ways for both protocols
        pingIntervalMs: 30000,       // as the Python servers (ping_interval=30)
    });

    // No auth callback: ocpp-rpc accepts every identity, as bare_ocpp.py does.
    server.on('client', (client) => {
        client.handle('BootNotification', () => ({ currentTime: now(), interval: 300, status: 'Accepted' }));
        client.handle('Heartbeat', () => ({ currentTime: now() }));
        client.handle('MeterValues', () => ({}));
        client.on('error', () => {});  // a peer going away is not the benchmark's business
    });

    const http = await server.listen(parsePort(process.argv), '127.0.0.1');
    console.log(`PORT ${http.address().port}`);

    const stop = async () => {
        await server.close({ force: true });
        process.exit(0);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
}

main().catch((err) => {
    console.error(`ocpp_rpc_server: ${err.stack || err}`);
    process.exit(1);
});

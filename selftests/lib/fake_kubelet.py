#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in for the kubelet's device manager, speaking real gRPC (grpcio)
with the .proto files railnetd is built from (compiled at start into a
temporary directory).

It serves Registration on DIR/kubelet.sock; after each Register it connects
to the plugin's endpoint, asks GetDevicePluginOptions and follows
ListAndWatch.  Events go to stdout as JSON lines; commands come on stdin:

  allocate RESOURCE ID...        -> {"event":"allocate", "devices":[...]} or {"event":"error"}
  preferred RESOURCE SIZE AVAIL,..  MUST,..   -> {"event":"preferred","ids":[...]}
  prestart RESOURCE ID...        -> {"event":"prestart"}
  restart                        -> kubelet.sock removed, plugins' sockets wiped, served again
  rebind                         -> only kubelet.sock removed and served again
  quit

usage: fake_kubelet.py DIR PROTO_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent import futures

import grpc

plugin_dir, proto_dir = sys.argv[1], sys.argv[2]
gen = tempfile.mkdtemp(prefix="railnet-kubelet-")
subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir,
                "--python_out", gen, "--grpc_python_out", gen,
                "deviceplugin.proto", "kubelet/registration.proto"], check=True)
sys.path.insert(0, gen)
import deviceplugin_pb2 as pb  # noqa: E402
import deviceplugin_pb2_grpc as pb_grpc  # noqa: E402
from kubelet import registration_pb2_grpc as reg_grpc  # noqa: E402

out_lock = threading.Lock()
plugins = {}  # resource name -> endpoint


def emit(**event):
    with out_lock:
        print(json.dumps(event), flush=True)


def stub(resource):
    channel = grpc.insecure_channel("unix://" + os.path.join(plugin_dir, plugins[resource]))
    return pb_grpc.DevicePluginStub(channel)


def follow(resource, endpoint):
    try:
        s = stub(resource)
        opts = s.GetDevicePluginOptions(pb.Empty(), timeout=5)
        emit(event="options", resource=resource, pre_start_required=opts.pre_start_required,
             preferred=opts.get_preferred_allocation_available)
        for resp in s.ListAndWatch(pb.Empty()):
            emit(event="devices", resource=resource,
                 devices=[{"id": d.ID, "health": d.health} for d in resp.devices])
    except grpc.RpcError as e:
        emit(event="stream_closed", resource=resource, code=str(e.code()))


class Registration(reg_grpc.RegistrationServicer):
    def Register(self, request, context):
        plugins[request.resource_name] = request.endpoint
        emit(event="register", resource=request.resource_name, endpoint=request.endpoint,
             version=request.version,
             preferred=request.options.get_preferred_allocation_available)
        # like the kubelet: answer first, then dial the plugin
        threading.Thread(target=follow, args=(request.resource_name, request.endpoint),
                         daemon=True).start()
        return pb.Empty()


def serve():
    sock = os.path.join(plugin_dir, "kubelet.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    reg_grpc.add_RegistrationServicer_to_server(Registration(), server)
    server.add_insecure_port("unix://" + sock)
    server.start()
    emit(event="listening", socket=sock)
    return server


def command(words, server):
    if words[0] == "allocate":
        req = pb.AllocateRequest(container_requests=[
            pb.ContainerAllocateRequest(devices_ids=words[2:])])
        try:
            resp = stub(words[1]).Allocate(req, timeout=5)
            emit(event="allocate", devices=[
                {"container_path": d.container_path, "host_path": d.host_path,
                 "permissions": d.permissions}
                for c in resp.container_responses for d in c.devices])
        except grpc.RpcError as e:
            emit(event="error", code=str(e.code()), message=e.details())
    elif words[0] == "preferred":
        req = pb.PreferredAllocationRequest(container_requests=[
            pb.ContainerPreferredAllocationRequest(
                allocation_size=int(words[2]),
                available_deviceIDs=[w for w in words[3].split(",") if w],
                must_include_deviceIDs=[w for w in (words[4] if len(words) > 4 else "").split(",") if w])])
        resp = stub(words[1]).GetPreferredAllocation(req, timeout=5)
        emit(event="preferred", ids=list(resp.container_responses[0].deviceIDs))
    elif words[0] == "prestart":
        stub(words[1]).PreStartContainer(pb.PreStartContainerRequest(devices_ids=words[2:]),
                                         timeout=5)
        emit(event="prestart")
    elif words[0] in ("restart", "rebind"):
        server.stop(0).wait()
        if words[0] == "restart":  # the kubelet wipes the directory
            for name in os.listdir(plugin_dir):
                os.unlink(os.path.join(plugin_dir, name))
        return serve()
    return server


def main():
    server = serve()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            server = command(words, server)
        except Exception as e:  # report, keep serving
            emit(event="error", message=str(e))
    server.stop(0)


if __name__ == "__main__":
    main()

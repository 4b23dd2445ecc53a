#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in for the kubelet's device manager, speaking real gRPC (grpcio)
with the .proto files railnetd is built from (compiled at start into a
temporary directory).

It serves Registration on DIR/kubelet.sock and handles Register the way the
kubelet does (pkg/kubelet/cm/devicemanager/plugin/v1beta1: Register ->
connectClient -> Connect -> PluginConnected): it dials the plugin's endpoint
(blocking, up to 10 s), calls GetDevicePluginOptions, and only then answers
Register; ListAndWatch is followed afterwards, in the background.  A plugin
that cannot serve while its Register call is in flight never registers.

With PODRES_SOCK it also serves the PodResources API v1 (List) there: every
successful `allocate` puts a pod holding those device IDs on the list until
`delete` removes it.

Events go to stdout as JSON lines; commands come on stdin:

  allocate RESOURCE ID...        -> {"event":"allocate", "pod":"pod-N", "devices":[...]}
                                    or {"event":"error"}
  delete POD                     -> the pod leaves the PodResources list
  preferred RESOURCE SIZE AVAIL,..  MUST,..   -> {"event":"preferred","ids":[...]}
  prestart RESOURCE ID...        -> {"event":"prestart"}
  refuse on|off                  -> Register answers an error (as for a bad version)
  podresources on|off            -> PodResources served or not (socket removed)
  restart                        -> kubelet.sock removed, plugins' sockets wiped, served again
  rebind                         -> only kubelet.sock removed and served again
  quit

Register events: "register_request" when the call arrives, "options" once
the plugin answered GetDevicePluginOptions, then "register" when Register is
answered OK (or "register_failed"), then "devices" for every ListAndWatch
message.

usage: fake_kubelet.py DIR PROTO_DIR [PODRES_SOCK]
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
podres_sock = sys.argv[3] if len(sys.argv) > 3 else None
gen = tempfile.mkdtemp(prefix="railnet-kubelet-")
subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir,
                "--python_out", gen, "--grpc_python_out", gen,
                "deviceplugin.proto", "kubelet/registration.proto", "podresources.proto"],
               check=True)
sys.path.insert(0, gen)
import deviceplugin_pb2 as pb  # noqa: E402
import deviceplugin_pb2_grpc as pb_grpc  # noqa: E402
import podresources_pb2 as pr  # noqa: E402
import podresources_pb2_grpc as pr_grpc  # noqa: E402
from kubelet import registration_pb2_grpc as reg_grpc  # noqa: E402

out_lock = threading.Lock()
plugins = {}  # resource name -> endpoint
pods = {}  # pod name -> [(resource, [device ids])]
state = {"refuse": False, "pods_made": 0}


def emit(**event):
    with out_lock:
        print(json.dumps(event), flush=True)


def stub(resource):
    channel = grpc.insecure_channel("unix://" + os.path.join(plugin_dir, plugins[resource]))
    return pb_grpc.DevicePluginStub(channel)


def watch(resource, s):
    try:
        for resp in s.ListAndWatch(pb.Empty()):
            emit(event="devices", resource=resource,
                 devices=[{"id": d.ID, "health": d.health} for d in resp.devices])
    except grpc.RpcError as e:
        emit(event="stream_closed", resource=resource, code=str(e.code()))


class Registration(reg_grpc.RegistrationServicer):
    def Register(self, request, context):
        emit(event="register_request", resource=request.resource_name,
             endpoint=request.endpoint, version=request.version)
        if state["refuse"]:
            emit(event="register_failed", resource=request.resource_name, why="refused")
            context.abort(grpc.StatusCode.UNKNOWN, "registration refused by the test kubelet")
        # the kubelet's order: dial the plugin (blocking), GetDevicePluginOptions,
        # and only then answer Register
        try:
            channel = grpc.insecure_channel("unix://" + os.path.join(plugin_dir, request.endpoint))
            grpc.channel_ready_future(channel).result(timeout=10)
            s = pb_grpc.DevicePluginStub(channel)
            opts = s.GetDevicePluginOptions(pb.Empty(), timeout=10)
        except (grpc.RpcError, grpc.FutureTimeoutError) as e:
            emit(event="register_failed", resource=request.resource_name, why=repr(e))
            context.abort(grpc.StatusCode.UNKNOWN, "failed to get device plugin options")
        emit(event="options", resource=request.resource_name,
             pre_start_required=opts.pre_start_required,
             preferred=opts.get_preferred_allocation_available)
        if not context.is_active():  # the plugin gave up waiting: it never hears the answer
            emit(event="register_failed", resource=request.resource_name,
                 why="the plugin cancelled Register")
            return pb.Empty()
        plugins[request.resource_name] = request.endpoint
        threading.Thread(target=watch, args=(request.resource_name, s), daemon=True).start()
        emit(event="register", resource=request.resource_name, endpoint=request.endpoint,
             version=request.version,
             preferred=request.options.get_preferred_allocation_available)
        return pb.Empty()


class PodResources(pr_grpc.PodResourcesListerServicer):
    def List(self, request, context):
        resp = pr.ListPodResourcesResponse()
        for name, held in sorted(pods.items()):
            p = resp.pod_resources.add(name=name, namespace="default")
            c = p.containers.add(name="main")
            for resource, ids in held:
                c.devices.add(resource_name=resource, device_ids=ids)
        emit(event="podresources_list", pods=len(resp.pod_resources))
        return resp


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


def serve_podresources():
    if os.path.exists(podres_sock):
        os.unlink(podres_sock)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pr_grpc.add_PodResourcesListerServicer_to_server(PodResources(), server)
    server.add_insecure_port("unix://" + podres_sock)
    server.start()
    emit(event="podresources_listening", socket=podres_sock)
    return server


def command(words, servers):
    if words[0] == "allocate":
        req = pb.AllocateRequest(container_requests=[
            pb.ContainerAllocateRequest(devices_ids=words[2:])])
        try:
            resp = stub(words[1]).Allocate(req, timeout=5)
            state["pods_made"] += 1
            pod = "pod-%d" % state["pods_made"]
            pods[pod] = [(words[1], words[2:])]
            emit(event="allocate", pod=pod, devices=[
                {"container_path": d.container_path, "host_path": d.host_path,
                 "permissions": d.permissions}
                for c in resp.container_responses for d in c.devices])
        except grpc.RpcError as e:
            emit(event="error", code=str(e.code()), message=e.details())
    elif words[0] == "delete":
        pods.pop(words[1], None)
        emit(event="deleted", pod=words[1])
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
    elif words[0] == "refuse":
        state["refuse"] = words[1] == "on"
        emit(event="refuse", on=state["refuse"])
    elif words[0] == "podresources":
        if servers.get("podres"):
            servers.pop("podres").stop(0).wait()
            if os.path.exists(podres_sock):
                os.unlink(podres_sock)
        if words[1] == "on":
            servers["podres"] = serve_podresources()
        else:
            emit(event="podresources_stopped")
    elif words[0] in ("restart", "rebind"):
        servers["kubelet"].stop(0).wait()
        if words[0] == "restart":  # the kubelet wipes the directory
            for name in os.listdir(plugin_dir):
                os.unlink(os.path.join(plugin_dir, name))
        servers["kubelet"] = serve()


def main():
    servers = {"kubelet": serve()}
    if podres_sock:
        servers["podres"] = serve_podresources()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            command(words, servers)
        except Exception as e:  # report, keep serving
            emit(event="error", message=str(e))
    for s in servers.values():
        s.stop(0)


if __name__ == "__main__":
    main()

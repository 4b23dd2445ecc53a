// SPDX-License-Identifier: Apache-2.0
/* Results and errors in the version the runtime asked for. */
#include <string.h>

#include "cni.h"

struct json_object *cni_error_json(const char *version, const struct cni_error *e)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "cniVersion", json_object_new_string(version && *version ? version : "1.1.0"));
	json_object_object_add(o, "code", json_object_new_int(e->code));
	json_object_object_add(o, "msg", json_object_new_string(e->msg));
	if (e->details[0])
		json_object_object_add(o, "details", json_object_new_string(e->details));
	return o;
}

struct json_object *cni_result_json(const char *version, const struct cni_result *r)
{
	bool legacy = cni_version_cmp(version, "1.0.0") < 0; /* 0.3.x, 0.4.0: ips[].version */
	struct json_object *o = json_object_new_object(), *ifs = json_object_new_array(),
			   *ips = json_object_new_array(), *routes = json_object_new_array(), *itf;

	json_object_object_add(o, "cniVersion", json_object_new_string(version));
	itf = json_object_new_object();
	json_object_object_add(itf, "name", json_object_new_string(r->ifname));
	json_object_object_add(itf, "mac", json_object_new_string(r->mac));
	if (!legacy && r->mtu)
		json_object_object_add(itf, "mtu", json_object_new_int(r->mtu));
	json_object_object_add(itf, "sandbox", json_object_new_string(r->sandbox));
	json_object_array_add(ifs, itf);
	json_object_object_add(o, "interfaces", ifs);

	for (size_t i = 0; i < r->nips; i++) {
		struct json_object *ip = json_object_new_object();

		if (legacy)
			json_object_object_add(ip, "version",
					       json_object_new_string(r->ips[i].family == 4 ? "4" : "6"));
		json_object_object_add(ip, "interface", json_object_new_int(0));
		json_object_object_add(ip, "address", json_object_new_string(r->ips[i].address));
		if (r->ips[i].gateway[0])
			json_object_object_add(ip, "gateway", json_object_new_string(r->ips[i].gateway));
		json_object_array_add(ips, ip);
	}
	json_object_object_add(o, "ips", ips);
	for (size_t i = 0; i < r->nroutes; i++) {
		struct json_object *rt = json_object_new_object();

		json_object_object_add(rt, "dst", json_object_new_string(r->routes[i].dst));
		if (r->routes[i].gw[0])
			json_object_object_add(rt, "gw", json_object_new_string(r->routes[i].gw));
		json_object_array_add(routes, rt);
	}
	json_object_object_add(o, "routes", routes);
	json_object_object_add(o, "dns", json_object_new_object());
	return o;
}

// SPDX-License-Identifier: Apache-2.0
/* railnetd: the railnet node agent. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/agent_metrics.h"
#include "agent/rdma.h"
#include "agent/ctl_server.h"
#include "agent/datapath.h"
#include "agent/release_queue.h"
#include "common/log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: railnetd [--config FILE] [--log-level error|warn|info|debug]\n"
		"                [--log-format text|json] [--check-config]\n"
		"  --config        configuration file (default /etc/railnet/railnetd.json)\n"
		"  --check-config  validate the configuration, print why it is invalid, exit\n");
}

static bool same(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

int agent_reload(struct agent *agent, const char *path)
{
	struct agent_config next, old;
	char errbuf[512];
	int err;

	err = agent_config_load(path, &next, errbuf, sizeof(errbuf));
	if (err) {
		log_err("config_reload_rejected", "config=%s err=\"%s\"", path, errbuf);
		return err;
	}
	if (!same(next.node_name, agent->cfg.node_name) || !same(next.socket, agent->cfg.socket) ||
	    !same(next.state_dir, agent->cfg.state_dir) || !same(next.bpffs, agent->cfg.bpffs)) {
		log_err("config_reload_rejected", "config=%s err=\"%s\"", path,
			"nodeName, socket, stateDir and bpffs take effect on restart only");
		agent_config_free(&next);
		return -EINVAL;
	}
	err = ipam_reconfigure(agent->ipam, &next.ipam, errbuf, sizeof(errbuf));
	if (err) {
		log_err("config_reload_rejected", "config=%s err=\"%s\"", path, errbuf);
		agent_config_free(&next);
		return err;
	}
	pthread_rwlock_wrlock(&agent->reload_lock);
	old = agent->cfg;
	agent->cfg = next;
	pthread_rwlock_unlock(&agent->reload_lock);
	agent_config_free(&old);
	log_info("config_reloaded", "config=%s pools=%zu", path, agent->cfg.ipam.npools);
	return 0;
}

/* --check-config: when stateDir holds a log, every allocation in it must
 * fit @cfg - a start would keep one that does not, outside its pool.  Read
 * only: a running agent's log is not touched. */
static int check_state(const struct agent_config *cfg, char *errbuf, size_t errlen)
{
	struct store *store;
	int err = store_local_open_readonly(cfg->state_dir, &store);

	if (err == -ENOENT)
		return 0; /* no state (or not mounted here): nothing allocated */
	if (err) {
		snprintf(errbuf, errlen, "cannot read %s/ipam.log: %s", cfg->state_dir, strerror(-err));
		return err;
	}
	return ipam_check_state(store, cfg->node_name, &cfg->ipam, errbuf, errlen);
}

static int signals_block(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, set, NULL))
		return -errno;
	return signalfd(-1, set, SFD_CLOEXEC);
}

/* A pod NIC whose addresses are gone - released by DEL, GC, the reconciler
 * or an operator - is no pod NIC any more: its datapath entry and its RDMA
 * attachment go too, whichever path let go of it. */
static void forget_nic(void *ctx, const struct ipam_key *key)
{
	struct agent *agent = ctx;

	if (agent->datapath)
		datapath_detach(agent->datapath, key->network, key->container_id, key->ifname);
	if (agent->rdma)
		rdma_detach(agent->rdma, key->network, key->container_id, key->ifname);
}

/* Waits for signals; reconciles orphaned allocations on the side. */
static void serve(struct agent *agent, int sfd, const char *config_path)
{
	struct pollfd pfd = { .fd = sfd, .events = POLLIN };
	struct signalfd_siginfo si;

	for (;;) {
		long long interval = agent->cfg.reconcile_interval_ms;
		int ret = poll(&pfd, 1, interval > 0 ? (int)interval : -1);

		if (ret == 0) {
			release_queue_drain(agent->ipam, agent->cfg.socket);
			ipam_reconcile(agent->ipam, agent->cfg.reconcile_grace_ms);
			/* What a burst (a big datapath.list, a wave of pods) freed
			 * goes back to the system, not kept by the allocator. */
			malloc_trim(0);
			continue;
		}
		if (ret < 0 || read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGHUP) {
			agent_reload(agent, config_path);
			continue;
		}
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_info("agent_stopping", "signal=%s", strsignal((int)si.ssi_signo));
			return;
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool check_only = false;
	const char *config_path = "/etc/railnet/railnetd.json";
	enum log_level level = LOG_LVL_INFO;
	enum log_format format = LOG_FMT_TEXT;
	struct ctl_server *server = NULL;
	struct conflict_probe_config conflict_cfg;
	struct datapath_config dp_cfg;
	struct agent agent = { 0 };
	struct store *store = NULL;
	char errbuf[512];
	sigset_t set;
	int opt, sfd, err;

	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'l':
			if (log_level_parse(optarg, &level)) {
				fprintf(stderr, "railnetd: --log-level %s: not one of error, warn, info, debug\n", optarg);
				return 2;
			}
			break;
		case 'f':
			if (log_format_parse(optarg, &format)) {
				fprintf(stderr, "railnetd: --log-format %s: not text or json\n", optarg);
				return 2;
			}
			break;
		case 'C':
			check_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	/* Control connections are served by many threads: an arena per
	 * thread would keep each one's freed memory apart (and resident).
	 * Buffers of 64 KB and up (a scrape's, a big reply's) are mapped and
	 * unmapped whole: glibc's sliding threshold would otherwise move them
	 * into the heap, between the entries that live for a pod's life. */
	mallopt(M_ARENA_MAX, 1);
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	log_setup("railnetd", level, format, stderr);
	log_route_libbpf();

	sfd = signals_block(&set);
	if (sfd < 0) {
		log_err("signalfd_failed", "err=\"%s\"", strerror(errno));
		return 1;
	}
	err = agent_config_load(config_path, &agent.cfg, errbuf, sizeof(errbuf));
	if (err) {
		log_err("config_invalid", "config=%s err=\"%s\"", config_path, errbuf);
		return 1;
	}
	if (check_only) {
		err = check_state(&agent.cfg, errbuf, sizeof(errbuf));
		if (err)
			log_err("config_invalid", "config=%s state=%s err=\"%s\"", config_path,
				agent.cfg.state_dir, errbuf);
		else
			log_info("config_valid", "config=%s node=%s pools=%zu", config_path,
				 agent.cfg.node_name, agent.cfg.ipam.npools);
		agent_config_free(&agent.cfg);
		return err ? 1 : 0;
	}
	pthread_rwlock_init(&agent.reload_lock, NULL);
	agent.started = time(NULL);

	err = store_local_open(agent.cfg.state_dir, &store);
	if (err) {
		log_err("store_open_failed", "dir=%s err=\"%s\"", agent.cfg.state_dir, strerror(-err));
		goto out;
	}
	err = ipam_open(store, agent.cfg.node_name, &agent.cfg.ipam, &agent.ipam, errbuf,
			sizeof(errbuf));
	store = NULL; /* the ipam owns it, even on failure */
	if (err) {
		log_err("ipam_open_failed", "err=\"%s\"", errbuf);
		goto out;
	}
	err = datapath_config_parse(agent.cfg.root, &dp_cfg, errbuf, sizeof(errbuf));
	if (err) {
		log_err("config_invalid", "config=%s err=\"%s\"", config_path, errbuf);
		goto out;
	}
	if (dp_cfg.enabled) {
		err = datapath_open(agent.cfg.bpffs, agent.cfg.state_dir, &dp_cfg, &agent.datapath);
		if (err)
			goto out;
	}
	if (agent.cfg.metrics_listen) {
		err = metrics_start(agent.cfg.metrics_listen, &agent.metrics);
		if (!err)
			err = agent_metrics_register(&agent);
		if (!err)
			err = datapath_metrics_register(agent.datapath, agent.metrics);
		if (err)
			goto out;
	}
	err = rdma_open_section(json_object_object_get(agent.cfg.root, "rdma"), agent.cfg.state_dir,
				&agent.rdma, errbuf, sizeof(errbuf));
	if (!err && (err = rdma_metrics_register(agent.rdma, agent.metrics)))
		snprintf(errbuf, sizeof(errbuf), "rdma: metrics: %s", strerror(-err));
	if (err) {
		log_err("rdma_start_failed", "err=\"%s\"", errbuf);
		goto out;
	}
	err = conflict_probe_config_parse(agent.cfg.root, &conflict_cfg, errbuf, sizeof(errbuf));
	if (!err)
		err = conflict_probe_open(agent.ipam, agent.cfg.state_dir, &conflict_cfg,
					  &agent.conflict);
	if (!err && agent.conflict)
		err = metrics_register(agent.metrics, conflict_probe_collect, agent.conflict);
	if (err)
		goto out;
	ipam_set_release_hook(agent.ipam, forget_nic, &agent);
	err = nic_teardown_open(agent.ipam, agent.cfg.socket, &agent.teardown);
	if (err)
		goto out;
	nic_teardown_recover(agent.teardown);
	release_queue_drain(agent.ipam, agent.cfg.socket);
	err = ctl_server_start(&agent, agent.cfg.socket, &server);
	if (err)
		goto out;
	log_info("agent_started", "node=%s pools=%zu socket=%s state=%s", agent.cfg.node_name,
		 agent.cfg.ipam.npools, agent.cfg.socket, agent.cfg.state_dir);

	serve(&agent, sfd, config_path);
	ctl_server_stop(server, 5000);
	err = 0;
out:
	/* Users before what they use: the teardown threads release through
	 * the hook into the datapath and RDMA, the collectors read them all. */
	metrics_stop(agent.metrics);
	nic_teardown_close(agent.teardown);
	conflict_probe_close(agent.conflict);
	rdma_stop(agent.rdma);
	datapath_close(agent.datapath);
	ipam_close(agent.ipam);
	agent_config_free(&agent.cfg);
	pthread_rwlock_destroy(&agent.reload_lock);
	close(sfd);
	if (!err)
		log_info("agent_stopped", "exit=0");
	return err ? 1 : 0;
}

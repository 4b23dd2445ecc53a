# SPDX-License-Identifier: Apache-2.0
# railnet — one non-recursive Makefile for the BPF objects, the agent, the CLI,
# the CNI plugin, the tests and the benchmarks.  `make help` lists the targets.

.DELETE_ON_ERROR:
.SUFFIXES:
.DEFAULT_GOAL := all

OUTPUT   ?= build
O        := $(patsubst %/,%,$(OUTPUT))
PREFIX   ?= /usr/local
DESTDIR  ?=
CNI_BIN_DIR ?= /opt/cni/bin

ARCH ?= $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' \
			       -e 's/ppc64le/powerpc/' -e 's/riscv64/riscv/' -e 's/s390x/s390/')
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
VMLINUX_H   ?= vmlinux/$(ARCH)/vmlinux.h

CC         ?= gcc
CLANG      ?= clang
BPFTOOL    ?= bpftool
PKG_CONFIG ?= pkg-config

ifeq ($(V),1)
Q :=
msg =
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

# Debian packages needed to build, test and run the demo.  `make deps`
# installs the missing ones; it is a no-op when all are present.
DEB_PKGS := make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev \
	    libnl-3-dev libnl-route-3-dev libjson-c-dev libevent-dev \
	    libcurl4-openssl-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler \
	    libibverbs-dev libcmocka-dev iproute2 iputils-ping iperf3 procps jq curl \
	    etcd-server etcd-client containernetworking-plugins \
	    python3-grpcio python3-grpc-tools python3-protobuf python3-yaml

# Userspace libraries.  Lazily expanded so that `make deps` can run on a
# machine where pkg-config does not know them yet.
USER_PKGS = libbpf libnl-3.0 libnl-route-3.0 json-c libevent_extra libevent_core libnghttp2 \
	    libprotobuf-c zlib
USER_PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(USER_PKGS))
# Linked statically (the -dev packages ship the archives), only libc
# dynamically: railnetd's RSS is a budget (bench_scrape.sh), and a shared
# library costs the pages its relocations and its neighbours' fault-around
# touch, while from an archive only the objects referenced are linked, next
# to each other, and --gc-sections drops railnet's own unused functions.
STATIC_PKGS = libbpf libnl-route-3.0 json-c libevent_extra libevent_core libnghttp2 \
	      libprotobuf-c zlib
USER_PKG_LIBS   = -Wl,--gc-sections -Wl,-Bstatic \
		  $(filter-out -lpthread,$(shell $(PKG_CONFIG) --static --libs $(STATIC_PKGS))) \
		  -Wl,-Bdynamic

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
	    -Wmissing-prototypes -Wold-style-definition -Wpointer-arith \
	    -Wundef -Wvla -Wno-unused-parameter -Wno-missing-field-initializers
CFLAGS   ?= -O2 -g
ALL_CFLAGS = $(CFLAGS) -std=gnu11 -D_GNU_SOURCE $(WARNINGS) -Iinclude -Iuser \
	     -I$(O) $(USER_PKG_CFLAGS) -ffunction-sections -fdata-sections -MMD -MP
LDLIBS    = $(USER_PKG_LIBS) -lpthread

BPF_CFLAGS := -g -O2 --target=bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) \
	      -I$(dir $(VMLINUX_H)) -Iinclude -Ibpf -Wall -Werror \
	      -Wno-unused-function -MMD -MP

# --- sources -------------------------------------------------------------
BPF_SRCS    := $(wildcard bpf/*.bpf.c)
BPF_OBJS    := $(BPF_SRCS:bpf/%.bpf.c=$(O)/bpf/%.bpf.o)
BPF_SKELS   := $(BPF_SRCS:bpf/%.bpf.c=$(O)/bpf/%.skel.h)

COMMON_SRCS := $(wildcard user/common/*.c)
AGENT_SRCS  := $(filter-out user/agent/main.c,$(wildcard user/agent/*.c))
CTL_SRCS    := $(filter-out user/ctl/main.c,$(wildcard user/ctl/*.c))
CNI_SRCS    := $(filter-out cni/main.c,$(wildcard cni/*.c))
PROTO_SRCS  := $(wildcard user/agent/proto/*.proto)
PROTO_GEN   := $(PROTO_SRCS:user/agent/proto/%.proto=$(O)/proto/%.pb-c.c)

obj = $(patsubst %.c,$(O)/%.o,$(1))
LIB_COMMON := $(O)/libcommon.a
LIB_AGENT  := $(O)/libagent.a
LIB_CTL    := $(O)/libctl.a
LIB_CNI    := $(O)/libcni.a

RAILNETD   := $(O)/railnetd
RAILNETCTL := $(O)/railnetctl
RAILNET    := $(O)/railnet
# A binary is built once its component has a main.c.
BINS       := $(if $(wildcard user/agent/main.c),$(RAILNETD)) \
	      $(if $(wildcard user/ctl/main.c),$(RAILNETCTL)) \
	      $(if $(wildcard cni/main.c),$(RAILNET))

UNIT_SRCS  := $(wildcard selftests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:%.c=$(O)/%)
PROG_SRCS  := $(wildcard selftests/prog_tests/test_*.c)
PROG_BINS  := $(PROG_SRCS:%.c=$(O)/%)
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:%.c=$(O)/%)
TEST_BINS  := $(UNIT_BINS) $(PROG_BINS) $(BENCH_BINS)

ALL_USER_OBJS := $(call obj,$(COMMON_SRCS) $(AGENT_SRCS) $(CTL_SRCS) $(CNI_SRCS) \
		  $(wildcard user/agent/main.c user/ctl/main.c cni/main.c) \
		  $(UNIT_SRCS) $(PROG_SRCS) $(BENCH_SRCS))

# Archives, so a test or a binary links only the objects it needs.  Order
# matters for the static linker: dependents before what they depend on.
LIBS_ALL := $(LIB_CNI) $(LIB_CTL) $(LIB_AGENT) $(LIB_COMMON)

# --- top-level targets -----------------------------------------------------
.PHONY: all bins tests test demo bench install vmlinux clean deps help

all: bins tests ## build the agent, CLI, CNI plugin, tests and benchmarks

bins: $(BINS)

tests: $(TEST_BINS)

test: deps ## install missing packages, build, run every test; ends with 'N passed, N failed'
	$(Q)$(MAKE) --no-print-directory all
	$(Q)OUTPUT=$(O) selftests/run.sh

demo: deps ## bring up the simulated rail cluster and show railnet at work
	$(Q)$(MAKE) --no-print-directory all
	$(Q)OUTPUT=$(O) selftests/demo.sh

bench: deps ## run the benchmarks (ratios against the reference plugins)
	$(Q)$(MAKE) --no-print-directory all
	$(Q)OUTPUT=$(O) bench/run.sh

deps: ## install the Debian packages railnet needs (no-op when present)
	$(Q)missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "  DEPS     installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

install: bins ## install railnetd/railnetctl to $(DESTDIR)$(PREFIX)/bin and the CNI plugin to $(DESTDIR)/opt/cni/bin
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(CNI_BIN_DIR)
	$(if $(wildcard $(RAILNETD)),install -m 0755 $(RAILNETD) $(DESTDIR)$(PREFIX)/bin/railnetd)
	$(if $(wildcard $(RAILNETCTL)),install -m 0755 $(RAILNETCTL) $(DESTDIR)$(PREFIX)/bin/railnetctl)
	$(if $(wildcard $(RAILNET)),install -m 0755 $(RAILNET) $(DESTDIR)$(CNI_BIN_DIR)/railnet)

vmlinux: ## regenerate vmlinux/$(ARCH)/vmlinux.h from VMLINUX_BTF
	$(Q)mkdir -p $(dir $(VMLINUX_H))
	$(call msg,GEN,$(VMLINUX_H))$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $(VMLINUX_H)

clean: ## remove the build directory
	$(Q)rm -rf $(O)

help: ## this list
	@grep -hE '^[a-z]+:.*## ' $(firstword $(MAKEFILE_LIST)) | \
		sed -e 's/:.*## /\t/' | awk -F'\t' '{ printf "  %-9s %s\n", $$1, $$2 }'
	@echo "  variables: OUTPUT=$(O) V=1 ARCH=$(ARCH) VMLINUX_H= DESTDIR= PREFIX=$(PREFIX)"

# --- BPF -----------------------------------------------------------------
# Static pattern rules: the generic %.o: %.c rule below must not claim them.
$(BPF_OBJS:.bpf.o=.tmp.o): $(O)/bpf/%.tmp.o: bpf/%.bpf.c $(VMLINUX_H)
	$(Q)mkdir -p $(@D)
	$(call msg,CLANG,$@)$(CLANG) $(BPF_CFLAGS) -MF $(@:.o=.d) -c $< -o $@

$(BPF_OBJS): $(O)/bpf/%.bpf.o: $(O)/bpf/%.tmp.o
	$(call msg,GEN-OBJ,$@)$(BPFTOOL) gen object $@ $<

$(BPF_SKELS): $(O)/bpf/%.skel.h: $(O)/bpf/%.bpf.o
	$(call msg,GEN-SKEL,$@)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@

# --- protobuf (kubelet device plugin API) ----------------------------------
$(O)/proto/%.pb-c.c $(O)/proto/%.pb-c.h: user/agent/proto/%.proto
	$(Q)mkdir -p $(@D)
	$(call msg,PROTOC,$<)protoc-c --proto_path=user/agent/proto --c_out=$(O)/proto $<

$(PROTO_GEN:%.c=%.o): %.o: %.c
	$(call msg,CC,$@)$(CC) $(filter-out -Wmissing-prototypes -Wundef,$(ALL_CFLAGS)) -Wno-error -c $< -o $@

# --- userspace -----------------------------------------------------------
# Every user object may include a skeleton or a generated protobuf header.
$(ALL_USER_OBJS): | $(BPF_SKELS) $(PROTO_GEN)

$(O)/%.o: %.c
	$(Q)mkdir -p $(@D)
	$(call msg,CC,$@)$(CC) $(ALL_CFLAGS) -c $< -o $@

define archive
$(1): $(call obj,$(2)) $(if $(filter $(LIB_AGENT),$(1)),$(PROTO_GEN:%.c=%.o))
	$$(Q)mkdir -p $$(@D)
	$$(call msg,AR,$$@)rm -f $$@ && ar rcs $$@ $$^
endef
$(eval $(call archive,$(LIB_COMMON),$(COMMON_SRCS)))
$(eval $(call archive,$(LIB_AGENT),$(AGENT_SRCS)))
$(eval $(call archive,$(LIB_CTL),$(CTL_SRCS)))
$(eval $(call archive,$(LIB_CNI),$(CNI_SRCS)))

$(RAILNETD): $(O)/user/agent/main.o $(LIBS_ALL)
	$(call msg,LINK,$@)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(RAILNETCTL): $(O)/user/ctl/main.o $(LIBS_ALL)
	$(call msg,LINK,$@)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The CNI plugin runs once per rail per pod: linked statically so that it
# starts in well under a millisecond (no dynamic loader, no relocations).
$(RAILNET): $(O)/cni/main.o $(LIB_CNI) $(LIB_COMMON)
	$(call msg,LINK,$@)$(CC) $(CFLAGS) -static -o $@ $^ \
		$(shell $(PKG_CONFIG) --static --libs libnl-route-3.0 json-c) -lpthread

$(O)/selftests/unit/%: $(O)/selftests/unit/%.o $(LIBS_ALL)
	$(call msg,LINK,$@)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
# test_ipam fails calloc() on purpose (see __wrap_calloc there).
$(O)/selftests/unit/test_ipam: LDLIBS += -Wl,--wrap=calloc

$(O)/selftests/prog_tests/%: $(O)/selftests/prog_tests/%.o $(LIBS_ALL)
	$(call msg,LINK,$@)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bench/%: $(O)/bench/%.o $(LIBS_ALL)
	$(call msg,LINK,$@)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

-include $(ALL_USER_OBJS:.o=.d) $(PROTO_GEN:.c=.d) $(BPF_OBJS:.bpf.o=.tmp.d)

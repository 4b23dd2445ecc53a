// SPDX-License-Identifier: Apache-2.0
/* metrics.c: the text exposition format, label escaping, collector order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/metrics.h"

static void collect_pods(void *ctx, struct metrics_writer *w)
{
	metrics_family(w, "railnet_x_total", "counter", "A help\nwith \\ newline.");
	metrics_sample_u64(w, "railnet_x_total", 18446744073709551615ULL, "pod", "a\"b\\c\nd",
			   "ifname", NULL, NULL);
	metrics_sample(w, "railnet_x_total", 0.5, NULL);
}

static void collect_second(void *ctx, struct metrics_writer *w)
{
	(*(int *)ctx)++;
	metrics_family(w, "railnet_y", "gauge", "Second.");
}

static void render_escapes_and_orders(void **state)
{
	struct metrics *m;
	char *body;
	size_t len;
	int calls = 0;

	assert_int_equal(metrics_new(&m), 0);
	assert_int_equal(metrics_register(m, collect_pods, NULL), 0);
	assert_int_equal(metrics_register(m, collect_second, &calls), 0);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	assert_string_equal(body, "# HELP railnet_x_total A help\\nwith \\\\ newline.\n"
				  "# TYPE railnet_x_total counter\n"
				  "railnet_x_total{pod=\"a\\\"b\\\\c\\nd\",ifname=\"\"} "
				  "18446744073709551615\n"
				  "railnet_x_total 0.5\n"
				  "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n");
	assert_int_equal(len, strlen(body));
	assert_int_equal(calls, 1);
	free(body);

	metrics_unregister(m, collect_pods, NULL);
	assert_int_equal(metrics_render(m, &body, &len), 0);
	assert_string_equal(body, "# HELP railnet_y Second.\n# TYPE railnet_y gauge\n");
	free(body);
	metrics_stop(m);
}

static void register_without_endpoint_is_a_no_op(void **state)
{
	assert_int_equal(metrics_register(NULL, collect_pods, NULL), 0);
	metrics_unregister(NULL, collect_pods, NULL);
	metrics_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(render_escapes_and_orders),
		cmocka_unit_test(register_without_endpoint_is_a_no_op),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

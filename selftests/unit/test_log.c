// SPDX-License-Identifier: Apache-2.0
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static char *capture(enum log_format format, enum log_level level, void (*emit)(void))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	log_setup("test", level, format, f);
	emit();
	fclose(f);
	log_setup("test", LOG_LVL_INFO, LOG_FMT_TEXT, NULL);
	return buf;
}

static void emit_allocation(void)
{
	log_info("ip_allocated", "pool=%s ifname=%s addr=%s err=\"%s\"", "gpu1-net11", "net1",
		 "172.16.11.5", "a \\\"quoted\\\" thing");
}

static void emit_debug(void)
{
	log_debug("noise", "x=%d", 1);
}

static void test_text_line_has_level_event_and_context(void **state)
{
	char *out = capture(LOG_FMT_TEXT, LOG_LVL_INFO, emit_allocation);

	assert_non_null(strstr(out, " info  test ip_allocated pool=gpu1-net11 ifname=net1"));
	assert_int_equal(out[strlen(out) - 1], '\n');
	free(out);
}

static void test_json_line_turns_pairs_into_fields(void **state)
{
	char *out = capture(LOG_FMT_JSON, LOG_LVL_INFO, emit_allocation);

	assert_non_null(strstr(out, "\"level\":\"info\""));
	assert_non_null(strstr(out, "\"event\":\"ip_allocated\""));
	assert_non_null(strstr(out, "\"pool\":\"gpu1-net11\",\"ifname\":\"net1\",\"addr\":\"172.16.11.5\""));
	assert_non_null(strstr(out, "\"err\":\"a \\\"quoted\\\" thing\""));
	assert_string_equal(out + strlen(out) - 2, "}\n");
	free(out);
}

static void emit_quoting_message(void)
{
	log_err("config_invalid", "config=%s err=\"%s\" next=%d", "a.json",
		"pools[0].ips[1]: \"172.16.11.300\" is not an IPv4 address", 1);
}

static void test_json_keeps_a_message_that_quotes_whole(void **state)
{
	char *out = capture(LOG_FMT_JSON, LOG_LVL_INFO, emit_quoting_message);

	assert_non_null(strstr(out, "\"err\":\"pools[0].ips[1]: \\\"172.16.11.300\\\" is not an IPv4 address\",\"next\":\"1\"}"));
	assert_null(strstr(out, "detail"));
	free(out);
}

static void test_level_filters(void **state)
{
	char *quiet = capture(LOG_FMT_TEXT, LOG_LVL_INFO, emit_debug);
	char *loud = capture(LOG_FMT_TEXT, LOG_LVL_DEBUG, emit_debug);

	assert_string_equal(quiet, "");
	assert_non_null(strstr(loud, "noise x=1"));
	free(quiet);
	free(loud);
}

static void test_parse_names(void **state)
{
	enum log_level level;
	enum log_format format;

	assert_int_equal(log_level_parse("DEBUG", &level), 0);
	assert_int_equal(level, LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("verbose", &level), -22);
	assert_int_equal(log_format_parse("json", &format), 0);
	assert_int_equal(format, LOG_FMT_JSON);
	assert_int_equal(log_format_parse("xml", &format), -22);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_line_has_level_event_and_context),
		cmocka_unit_test(test_json_line_turns_pairs_into_fields),
		cmocka_unit_test(test_json_keeps_a_message_that_quotes_whole),
		cmocka_unit_test(test_level_filters),
		cmocka_unit_test(test_parse_names),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}

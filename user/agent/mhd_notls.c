// SPDX-License-Identifier: Apache-2.0
/* The GnuTLS entry points of libmicrohttpd's TLS code, for railnetd's static
 * link with libmicrohttpd.a: every one fails, as a GnuTLS without TLS would.
 *
 * The metrics endpoint serves plain HTTP (metrics.c never passes
 * MHD_USE_TLS), yet Debian's libmicrohttpd is built with HTTPS support: the
 * shared library brings GnuTLS and its chain (p11-kit, nettle, hogweed, gmp,
 * tasn1, idn2, unistring, ffi) and MHD's constructor initialises GnuTLS, so
 * the agent held ~2 MiB of their pages and heap for code it never runs.
 * Linked statically against these instead, MHD's TLS paths stay in the
 * binary and are never taken; a daemon started with MHD_USE_TLS would fail to
 * start (its priority string is refused) rather than serve without TLS.
 *
 * Only what libmicrohttpd.a references is here, each with GnuTLS's own
 * prototype (the header checks them): a newer libmicrohttpd that needs
 * another symbol fails to link, it does not misbehave.  This archive is
 * linked after -lmicrohttpd and only the agent's programs use it. */
#include <stdlib.h>

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>

#define NOTLS GNUTLS_E_UNIMPLEMENTED_FEATURE

gnutls_alloc_function gnutls_malloc = malloc;

/* MHD_init calls it from a constructor and panics on failure: there is
 * nothing to set up. */
int gnutls_global_init(void)
{
	return 0;
}

void gnutls_global_deinit(void)
{
}

const char *gnutls_strerror(int error)
{
	return error == NOTLS ? "TLS is not linked into railnetd" : "TLS error";
}

/* --- daemon setup: the first calls MHD_USE_TLS makes, refused ------------ */

int gnutls_priority_init(gnutls_priority_t *priority_cache, const char *priorities,
			 const char **err_pos)
{
	if (err_pos)
		*err_pos = priorities;
	return NOTLS;
}

void gnutls_priority_deinit(gnutls_priority_t priority_cache)
{
}

int gnutls_certificate_allocate_credentials(gnutls_certificate_credentials_t *res)
{
	return NOTLS;
}

void gnutls_certificate_free_credentials(gnutls_certificate_credentials_t sc)
{
}

int gnutls_certificate_set_x509_key_mem(gnutls_certificate_credentials_t res,
					const gnutls_datum_t *cert, const gnutls_datum_t *key,
					gnutls_x509_crt_fmt_t type)
{
	return NOTLS;
}

int gnutls_certificate_set_x509_key_mem2(gnutls_certificate_credentials_t res,
					 const gnutls_datum_t *cert, const gnutls_datum_t *key,
					 gnutls_x509_crt_fmt_t type, const char *pass,
					 unsigned int flags)
{
	return NOTLS;
}

int gnutls_certificate_set_x509_trust_mem(gnutls_certificate_credentials_t res,
					  const gnutls_datum_t *ca, gnutls_x509_crt_fmt_t type)
{
	return NOTLS;
}

void gnutls_certificate_set_retrieve_function2(gnutls_certificate_credentials_t cred,
					       gnutls_certificate_retrieve_function2 *func)
{
}

void gnutls_certificate_set_retrieve_function3(gnutls_certificate_credentials_t cred,
					       gnutls_certificate_retrieve_function3 *func)
{
}

void gnutls_certificate_set_dh_params(gnutls_certificate_credentials_t res,
				      gnutls_dh_params_t dh_params)
{
}

int gnutls_dh_params_init(gnutls_dh_params_t *dh_params)
{
	return NOTLS;
}

int gnutls_dh_params_import_pkcs3(gnutls_dh_params_t params, const gnutls_datum_t *pkcs3_params,
				  gnutls_x509_crt_fmt_t format)
{
	return NOTLS;
}

void gnutls_dh_params_deinit(gnutls_dh_params_t dh_params)
{
}

int gnutls_psk_allocate_server_credentials(gnutls_psk_server_credentials_t *sc)
{
	return NOTLS;
}

void gnutls_psk_free_server_credentials(gnutls_psk_server_credentials_t sc)
{
}

void gnutls_psk_set_server_credentials_function(gnutls_psk_server_credentials_t cred,
						gnutls_psk_server_credentials_function *func)
{
}

/* --- sessions: unreachable without a TLS daemon ---------------------------- */

int gnutls_init(gnutls_session_t *session, unsigned int flags)
{
	return NOTLS;
}

void gnutls_deinit(gnutls_session_t session)
{
}

int gnutls_priority_set(gnutls_session_t session, gnutls_priority_t priority)
{
	return NOTLS;
}

int gnutls_credentials_set(gnutls_session_t session, gnutls_credentials_type_t type, void *cred)
{
	return NOTLS;
}

void gnutls_certificate_server_set_request(gnutls_session_t session,
					   gnutls_certificate_request_t req)
{
}

int gnutls_alpn_set_protocols(gnutls_session_t session, const gnutls_datum_t *protocols,
			      unsigned protocols_size, unsigned flags)
{
	return NOTLS;
}

void gnutls_session_set_ptr(gnutls_session_t session, void *ptr)
{
}

void *gnutls_session_get_ptr(gnutls_session_t session)
{
	return NULL;
}

void gnutls_transport_set_int2(gnutls_session_t session, int r, int s)
{
}

int gnutls_handshake(gnutls_session_t session)
{
	return NOTLS;
}

ssize_t gnutls_record_send(gnutls_session_t session, const void *data, size_t data_size)
{
	return NOTLS;
}

ssize_t gnutls_record_recv(gnutls_session_t session, void *data, size_t data_size)
{
	return NOTLS;
}

size_t gnutls_record_check_pending(gnutls_session_t session)
{
	return 0;
}

int gnutls_record_get_direction(gnutls_session_t session)
{
	return 0;
}

int gnutls_bye(gnutls_session_t session, gnutls_close_request_t how)
{
	return NOTLS;
}

gnutls_protocol_t gnutls_protocol_get_version(gnutls_session_t session)
{
	return GNUTLS_VERSION_UNKNOWN;
}

gnutls_cipher_algorithm_t gnutls_cipher_get(gnutls_session_t session)
{
	return GNUTLS_CIPHER_UNKNOWN;
}

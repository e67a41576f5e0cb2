/*
 * backend_etcd.c: the etcd backend: the store kept in an etcd cluster under
 * a prefix, spoken to through etcd's v3 JSON gateway (/v3/...) with
 * libcurl. Keys and values are base64 in that JSON.
 *
 * Layout in etcd: PREFIX/<db>/<key bytes> -> the same value bytes as LMDB
 * (db: keys, creds, cache, audit, meta), plus one commit marker
 * PREFIX/_txn that every commit of this backend overwrites with its own
 * transaction id.
 *
 * Reads never wait on etcd: each open store keeps a mirror of the prefix
 * in memory, loaded by one range read at a revision (paged) and kept
 * current by a watch from the next revision (a thread reading the
 * streamed, newline-delimited JSON of /v3/watch). A compacted revision, or
 * a watch that cannot resume, triggers a full reload. A mirror is an
 * immutable snapshot (a sorted array of reference-counted entries): a read
 * transaction holds one snapshot from begin to end, and the watch thread
 * publishes a new one per watch response. The generation is the last etcd
 * revision the mirror applied.
 *
 * Writes are optimistic. A write transaction runs the caller's function
 * against a private copy of the snapshot it began on; its commit is the
 * difference between the two, sent as one etcd txn guarded by a single
 * compare: every key under the prefix has mod_revision <= the snapshot's
 * revision. Because every commit also rewrites the marker, any commit by
 * anyone since the snapshot (a put, a delete, a new key) fails that
 * compare: writes are serialisable with one compare, whatever the function
 * read or scanned. (Every p8vault write advances the audit head anyway, so
 * finer-grained compares would buy no concurrency.) On a failed compare the
 * writer waits until the mirror has moved past its snapshot and asks
 * store.c to run the function again. Writers of one process take turns
 * (wlock) so that they do not fail each other's compares.
 *
 * Outcome unknown (the connection broke or timed out after the request was
 * sent): the commit is never re-run blindly. The marker tells: the first
 * commit under the prefix after the snapshot is the only one that could be
 * ours (our compare makes it so), so the value the marker took at the first
 * revision after the snapshot where it changed is read back; ours: landed;
 * another's: not landed, run again; cannot tell (etcd unreachable,
 * compacted): P8V_ERR_STORE_UNAVAILABLE ("may have been applied").
 *
 * Endpoints are tried in turn from the last one that answered; a
 * connection error moves on to the next one; when none answers the call
 * fails with P8V_ERR_STORE_UNAVAILABLE.
 */
#include "store/backend.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "common/err.h"
#include "common/log.h"

/* etcd's default --max-txn-ops is 128; one operation is the marker's. */
#define ETCD_MAX_TXN_OPS 127
/* etcd's default --max-request-bytes is 1.5 MiB; base64 takes 4/3 of the
 * raw bytes and the JSON some more, so 1 MiB of keys and values fits. */
#define ETCD_MAX_TXN_BYTES ((size_t)1 << 20)
/* Keys per page of the initial range read. */
#define ETCD_RANGE_PAGE 1000
/* Connecting to one endpoint: loopback or a LAN answers in far less. */
#define ETCD_CONNECT_TIMEOUT_MS 1000L
/* One request, answer included. A commit forwarded to a leader that
 * just died waits for etcd's own request timeout (5 s plus two election
 * timeouts) before etcd says so; giving up sooner and reading the marker
 * back (which then runs against the new leader) recovers faster. */
#define ETCD_REQUEST_TIMEOUT_MS 3000L
/* How long a writer waits for its own commit (or a conflicting one) to
 * reach the mirror through the watch. */
#define ETCD_MIRROR_WAIT_MS 5000
/* How often the prober reads the commit marker (linearizable): a watch
 * that is connected but silent while commits happen, or an etcd that no
 * longer answers reads (quorum lost), is found this way. */
#define ETCD_PROBE_MS 1000
/* How long a write may wait at begin for the watch to be (re)connected. */
#define ETCD_CONNECT_WAIT_MS 2000
/* The watch thread's pause between failed attempts. */
#define ETCD_RETRY_PAUSE_MS 200
/* Revisions walked back when reading back a commit of unknown outcome. */
#define ETCD_READBACK_MAX_REVS 100000
/* Longest prefix (keys are at most STORE_MAX_KEY_BYTES on top). */
#define ETCD_MAX_PREFIX 256
/* The marker's key below the prefix. */
#define ETCD_MARKER "_txn"

static const char *const db_names[STORE_DB_COUNT] = {
	"keys", "creds", "cache", "audit", "meta",
};

/* Internal results of one HTTP request (never returned by the backend). */
#define E_CONN (-1000)          /* nothing sent: try another endpoint */
#define E_UNKNOWN (-1001)       /* sent, no answer: outcome unknown */
#define E_AUTH (-1002)          /* the token was refused: authenticate */

struct ent {
	unsigned int refs;      /* atomic */
	int64_t mod_rev;
	uint8_t db;
	size_t klen, vlen;
	uint8_t *key, *val;     /* into data */
	uint8_t data[];
};

struct snap {
	unsigned int refs;      /* atomic */
	int64_t rev;            /* the last revision applied */
	size_t n, cap;
	struct ent **e;         /* sorted by (db, key) */
};

struct wtx {
	struct snap *base;      /* the snapshot the function began on */
	struct snap *priv;      /* base plus the function's writes; NULL
	                           until its first write */
};

struct store_impl {
	char **eps;             /* "http(s)://host:port" */
	size_t n_eps;
	unsigned int cur_ep;    /* atomic: the last one that answered */
	char prefix[ETCD_MAX_PREFIX + 2];       /* "PREFIX/" */
	size_t plen;
	char *cacert, *cert, *key, *user, *password;

	pthread_mutex_t tok_mu;
	char *token;            /* etcd auth token, NULL without auth */

	pthread_mutex_t mu;     /* snap, connected, reload */
	pthread_cond_t cond;    /* signalled on every new snapshot */
	struct snap *snap;
	int connected;          /* the watch is established */
	int64_t down_since_ms;  /* when the watch went down (monotonic) */
	int64_t applied_rev;    /* atomic copy of snap->rev */

	pthread_mutex_t wlock;  /* one writer of this process at a time */

	pthread_mutex_t pool_mu;
	CURL *pool[16];
	size_t n_pool;

	pthread_t watcher;
	int watcher_started;
	pthread_t prober;
	int prober_started;
	int stop;               /* atomic */
	/* The prober's findings (under mu): since when etcd has not answered
	 * its linearizable read, since when the mirror has been behind the
	 * last commit etcd reports; 0: not. */
	int64_t probe_fail_since_ms;
	int64_t probe_started_ms;       /* a probe in flight since; 0: none */
	int64_t behind_since_ms;
	int stalled;            /* atomic: the watch must be dropped */

	char node[33];          /* random, names this process's commits */
	uint64_t txn_seq;       /* atomic */
	uint64_t round_trips;   /* atomic, for metrics */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- entries and snapshots ---- */

static struct ent *
ent_new(uint8_t db, const void *key, size_t klen, const void *val,
    size_t vlen, int64_t mod_rev)
{
	struct ent *e;

	if ((e = malloc(sizeof(*e) + klen + vlen + 1)) == NULL)
		return NULL;
	e->refs = 1;
	e->mod_rev = mod_rev;
	e->db = db;
	e->klen = klen;
	e->vlen = vlen;
	e->key = e->data;
	e->val = e->data + klen;
	memcpy(e->key, key, klen);
	if (vlen > 0)
		memcpy(e->val, val, vlen);
	return e;
}

static void
ent_unref(struct ent *e)
{
	if (e != NULL && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(e);
}

static int
ent_cmp(uint8_t db, const uint8_t *key, size_t klen, const struct ent *e)
{
	size_t n = klen < e->klen ? klen : e->klen;
	int c;

	if (db != e->db)
		return db < e->db ? -1 : 1;
	if ((c = memcmp(key, e->key, n)) != 0)
		return c;
	return klen < e->klen ? -1 : klen > e->klen ? 1 : 0;
}

static int
ent_qsort_cmp(const void *a, const void *b)
{
	const struct ent *x = *(struct ent *const *)a;

	return ent_cmp(x->db, x->key, x->klen, *(struct ent *const *)b);
}

/* The first index whose entry is >= (db, key). */
static size_t
lower_bound(const struct snap *s, uint8_t db, const uint8_t *key, size_t klen)
{
	size_t lo = 0, hi = s->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (ent_cmp(db, key, klen, s->e[mid]) > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The first index of db + 1's entries (the end of db's). */
static size_t
db_end(const struct snap *s, uint8_t db)
{
	size_t lo = 0, hi = s->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (s->e[mid]->db <= db)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct snap *
snap_new(size_t cap)
{
	struct snap *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->refs = 1;
	s->cap = cap < 16 ? 16 : cap;
	if ((s->e = malloc(s->cap * sizeof(*s->e))) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

static void
snap_unref(struct snap *s)
{
	size_t i;

	if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (i = 0; i < s->n; i++)
		ent_unref(s->e[i]);
	free(s->e);
	free(s);
}

/* A private copy sharing the entries. */
static struct snap *
snap_copy(const struct snap *from)
{
	struct snap *s;
	size_t i;

	if ((s = snap_new(from->n + 16)) == NULL)
		return NULL;
	for (i = 0; i < from->n; i++) {
		s->e[i] = from->e[i];
		__atomic_add_fetch(&s->e[i]->refs, 1, __ATOMIC_RELAXED);
	}
	s->n = from->n;
	s->rev = from->rev;
	return s;
}

/* Put e (its reference moves to s) in place of an equal key, or insert. */
static int
snap_set(struct snap *s, struct ent *e)
{
	size_t i = lower_bound(s, e->db, e->key, e->klen);
	struct ent **ne;

	if (i < s->n && ent_cmp(e->db, e->key, e->klen, s->e[i]) == 0) {
		ent_unref(s->e[i]);
		s->e[i] = e;
		return 0;
	}
	if (s->n == s->cap) {
		if ((ne = realloc(s->e, s->cap * 2 * sizeof(*ne))) == NULL)
			return P8V_ERR_ALLOC;
		s->e = ne;
		s->cap *= 2;
	}
	memmove(s->e + i + 1, s->e + i, (s->n - i) * sizeof(*s->e));
	s->e[i] = e;
	s->n++;
	return 0;
}

/* Remove (db, key): 0 or P8V_ERR_NOT_FOUND. */
static int
snap_del(struct snap *s, uint8_t db, const uint8_t *key, size_t klen)
{
	size_t i = lower_bound(s, db, key, klen);

	if (i >= s->n || ent_cmp(db, key, klen, s->e[i]) != 0)
		return P8V_ERR_NOT_FOUND;
	ent_unref(s->e[i]);
	memmove(s->e + i, s->e + i + 1, (s->n - i - 1) * sizeof(*s->e));
	s->n--;
	return 0;
}

static struct snap *
current_snap(struct store_impl *im)
{
	struct snap *s;

	pthread_mutex_lock(&im->mu);
	s = im->snap;
	if (s != NULL)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&im->mu);
	return s;
}

static void
publish(struct store_impl *im, struct snap *s)
{
	struct snap *old;

	pthread_mutex_lock(&im->mu);
	old = im->snap;
	im->snap = s;
	__atomic_store_n(&im->applied_rev, s->rev, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&im->cond);
	pthread_mutex_unlock(&im->mu);
	snap_unref(old);
}

/* Wait until the mirror applied a revision >= rev: 0 or -1 (timed out,
 * or the store is closing). */
static int
wait_rev(struct store_impl *im, int64_t rev, int ms)
{
	struct timespec ts;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&im->mu);
	while (im->snap->rev < rev && r == 0 &&
	    !__atomic_load_n(&im->stop, __ATOMIC_RELAXED))
		r = pthread_cond_timedwait(&im->cond, &im->mu, &ts);
	r = im->snap->rev >= rev ? 0 : -1;
	pthread_mutex_unlock(&im->mu);
	return r;
}

/* ---- keys in etcd ---- */

/* Split an etcd key into (db, key): 0 or -1 (not one of ours). */
static int
split_key(const struct store_impl *im, const uint8_t *k, size_t klen,
    uint8_t *db, const uint8_t **key, size_t *keylen)
{
	size_t i, n;

	if (klen <= im->plen || memcmp(k, im->prefix, im->plen) != 0)
		return -1;
	k += im->plen;
	klen -= im->plen;
	for (i = 0; i < STORE_DB_COUNT; i++) {
		n = strlen(db_names[i]);
		if (klen > n + 1 && memcmp(k, db_names[i], n) == 0 &&
		    k[n] == '/') {
			*db = (uint8_t)i;
			*key = k + n + 1;
			*keylen = klen - n - 1;
			return 0;
		}
	}
	return -1;
}

/* base64 of PREFIX/<db>/<key> (db < 0: PREFIX/<key>), as a JSON string. */
static json_t *
b64_json(const void *a, size_t alen, const void *b, size_t blen,
    const void *c, size_t clen)
{
	size_t n = alen + blen + clen, bl;
	uint8_t *raw;
	char *out;
	json_t *j = NULL;

	bl = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	raw = malloc(n + 1);
	out = malloc(bl);
	if (raw != NULL && out != NULL) {
		memcpy(raw, a, alen);
		if (blen > 0)
			memcpy(raw + alen, b, blen);
		if (clen > 0)
			memcpy(raw + alen + blen, c, clen);
		sodium_bin2base64(out, bl, raw, n,
		    sodium_base64_VARIANT_ORIGINAL);
		j = json_string(out);
	}
	free(raw);
	free(out);
	return j;
}

static json_t *
ekey(const struct store_impl *im, int db, const void *key, size_t klen)
{
	char mid[16];

	if (db < 0)
		return b64_json(im->prefix, im->plen, key, klen, NULL, 0);
	snprintf(mid, sizeof(mid), "%s/", db_names[db]);
	return b64_json(im->prefix, im->plen, mid, strlen(mid), key, klen);
}

/* The end of the range of keys starting with PREFIX/ (or PREFIX/<db>/). */
static json_t *
ekey_end(const struct store_impl *im, int db)
{
	char buf[ETCD_MAX_PREFIX + 32];
	size_t n;

	if (db < 0)
		n = (size_t)snprintf(buf, sizeof(buf), "%s", im->prefix);
	else
		n = (size_t)snprintf(buf, sizeof(buf), "%s%s/", im->prefix,
		    db_names[db]);
	buf[n - 1]++;           /* '/' + 1 = '0' */
	return b64_json(buf, n, NULL, 0, NULL, 0);
}

/* Decode a base64 JSON string into a malloc'ed buffer. */
static uint8_t *
unb64(json_t *j, size_t *len)
{
	const char *s = json_string_value(j);
	size_t sl, cap;
	uint8_t *out;

	*len = 0;
	if (s == NULL)
		s = "";
	sl = strlen(s);
	cap = sl / 4 * 3 + 3;
	if ((out = malloc(cap + 1)) == NULL)
		return NULL;
	if (sodium_base642bin(out, cap, s, sl, NULL, len, NULL,
	    sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* etcd's JSON carries int64 as strings; absent means 0. */
static int64_t
jint(json_t *j)
{
	if (json_is_integer(j))
		return (int64_t)json_integer_value(j);
	if (json_is_string(j))
		return strtoll(json_string_value(j), NULL, 10);
	return 0;
}

/* ---- HTTP ---- */

struct buf {
	char *p;
	size_t n, cap;
};

static size_t
buf_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	char *np;

	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		if ((np = realloc(b->p, b->cap)) == NULL)
			return 0;
		b->p = np;
	}
	memcpy(b->p + b->n, data, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

static CURL *
handle_get(struct store_impl *im)
{
	CURL *c = NULL;

	pthread_mutex_lock(&im->pool_mu);
	if (im->n_pool > 0)
		c = im->pool[--im->n_pool];
	pthread_mutex_unlock(&im->pool_mu);
	if (c == NULL)
		c = curl_easy_init();
	return c;
}

static void
handle_put(struct store_impl *im, CURL *c)
{
	pthread_mutex_lock(&im->pool_mu);
	if (im->n_pool < sizeof(im->pool) / sizeof(im->pool[0])) {
		im->pool[im->n_pool++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&im->pool_mu);
	if (c != NULL)
		curl_easy_cleanup(c);
}

static void
setup_tls(struct store_impl *im, CURL *c)
{
	if (im->cacert != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, im->cacert);
	if (im->cert != NULL)
		curl_easy_setopt(c, CURLOPT_SSLCERT, im->cert);
	if (im->key != NULL)
		curl_easy_setopt(c, CURLOPT_SSLKEY, im->key);
}

/*
 * POST body to endpoint ep's path. 0 with *resp (HTTP 200, a JSON object),
 * E_CONN, E_UNKNOWN, E_AUTH, or P8V_ERR_STORE (etcd refused: logged).
 */
static int
post(struct store_impl *im, size_t ep, const char *path, const char *body,
    const char *token, json_t **resp)
{
	char url[1024], auth[1024];
	struct curl_slist *hdr = NULL;
	struct buf b = { 0 };
	CURL *c;
	CURLcode cc;
	long status = 0;
	json_t *j = NULL, *msg;
	int r = E_UNKNOWN;

	*resp = NULL;
	if ((c = handle_get(im)) == NULL)
		return P8V_ERR_ALLOC;
	snprintf(url, sizeof(url), "%s%s", im->eps[ep], path);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ETCD_REQUEST_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	if (token != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: %s", token);
		hdr = curl_slist_append(hdr, auth);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	setup_tls(im, c);
	__atomic_add_fetch(&im->round_trips, 1, __ATOMIC_RELAXED);
	cc = curl_easy_perform(c);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdr);
	if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
	    cc == CURLE_SSL_CONNECT_ERROR) {
		r = E_CONN;
		goto out;
	}
	if (cc != CURLE_OK) {
		curl_off_t up = 0;

		/* Nothing of the body left this machine: not sent. */
		if (curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up) ==
		    CURLE_OK && up == 0)
			r = E_CONN;
		else
			r = E_UNKNOWN;
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	j = b.p != NULL ? json_loadb(b.p, b.n, 0, NULL) : NULL;
	if (status == 200 && json_is_object(j)) {
		*resp = j;
		j = NULL;
		r = 0;
		goto out;
	}
	msg = json_object_get(j, "error");
	if (msg == NULL)
		msg = json_object_get(j, "message");
	if (status == 401 || (json_string_value(msg) != NULL &&
	    strstr(json_string_value(msg), "invalid auth token") != NULL)) {
		r = E_AUTH;
		goto out;
	}
	/* 503 (no leader, request timed out): may or may not have run. */
	if (status >= 500) {
		log_warnf("store_etcd", "etcd %s%s: HTTP %ld %s", im->eps[ep],
		    path, status, json_string_value(msg) != NULL ?
		    json_string_value(msg) : "");
		r = E_UNKNOWN;
		goto out;
	}
	log_errorf("store_etcd", "etcd %s%s refused: HTTP %ld %s", im->eps[ep],
	    path, status, json_string_value(msg) != NULL ?
	    json_string_value(msg) : "");
	r = P8V_ERR_STORE;
 out:
	json_decref(j);
	free(b.p);
	if (r == 0 || r == E_AUTH || r == P8V_ERR_STORE)
		handle_put(im, c);
	else
		curl_easy_cleanup(c);   /* its connection is broken */
	return r;
}

/* Authenticate at endpoint ep: 0, E_CONN, E_UNKNOWN or P8V_ERR_STORE. */
static int
authenticate(struct store_impl *im, size_t ep)
{
	json_t *req, *resp = NULL;
	char *body;
	const char *tok;
	int r;

	if ((req = json_pack("{s:s, s:s}", "name", im->user, "password",
	    im->password)) == NULL)
		return P8V_ERR_ALLOC;
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (body == NULL)
		return P8V_ERR_ALLOC;
	r = post(im, ep, "/v3/auth/authenticate", body, NULL, &resp);
	sodium_memzero(body, strlen(body));
	free(body);
	if (r == E_AUTH)
		r = P8V_ERR_STORE;
	if (r != 0)
		return r;
	if ((tok = json_string_value(json_object_get(resp, "token"))) ==
	    NULL) {
		json_decref(resp);
		log_errorf("store_etcd", "etcd authentication gave no token");
		return P8V_ERR_STORE;
	}
	pthread_mutex_lock(&im->tok_mu);
	free(im->token);
	im->token = strdup(tok);
	pthread_mutex_unlock(&im->tok_mu);
	json_decref(resp);
	return 0;
}

/*
 * One call to etcd, endpoints in turn from the last that answered.
 * idempotent: an unanswered request may be sent again to the next
 * endpoint. Returns 0 with *resp, E_UNKNOWN (not idempotent: sent, no
 * answer), P8V_ERR_STORE_UNAVAILABLE (no endpoint answered),
 * P8V_ERR_STORE, P8V_ERR_ALLOC.
 */
static int
call(struct store_impl *im, const char *path, json_t *req, int idempotent,
    json_t **resp)
{
	unsigned int start = __atomic_load_n(&im->cur_ep, __ATOMIC_RELAXED);
	char *body, *tok;
	size_t i, ep;
	int r = P8V_ERR_STORE_UNAVAILABLE, tries;

	*resp = NULL;
	if ((body = json_dumps(req, JSON_COMPACT)) == NULL)
		return P8V_ERR_ALLOC;
	for (i = 0; i < im->n_eps; i++) {
		ep = (start + i) % im->n_eps;
		for (tries = 0; tries < 2; tries++) {
			if (im->user != NULL) {
				pthread_mutex_lock(&im->tok_mu);
				tok = im->token != NULL ? strdup(im->token) :
				    NULL;
				pthread_mutex_unlock(&im->tok_mu);
				if (tok == NULL &&
				    (r = authenticate(im, ep)) != 0)
					break;
				if (tok == NULL)
					continue;
			} else
				tok = NULL;
			r = post(im, ep, path, body, tok, resp);
			free(tok);
			if (r != E_AUTH)
				break;
			pthread_mutex_lock(&im->tok_mu);
			free(im->token);
			im->token = NULL;
			pthread_mutex_unlock(&im->tok_mu);
		}
		if (r == 0) {
			__atomic_store_n(&im->cur_ep, (unsigned)ep,
			    __ATOMIC_RELAXED);
			break;
		}
		if (r == E_UNKNOWN && !idempotent)
			break;
		if (r != E_CONN && r != E_UNKNOWN && r != E_AUTH)
			break;
		r = P8V_ERR_STORE_UNAVAILABLE;
	}
	free(body);
	if (r == E_AUTH)
		r = P8V_ERR_STORE;
	if (r == P8V_ERR_STORE_UNAVAILABLE)
		log_warnf("store_unavailable", "no etcd endpoint answered %s",
		    path);
	return r;
}

/* ---- the mirror ---- */

/* Add one kv of a range or watch answer to s (PUT; del: DELETE). */
static int
apply_kv(struct store_impl *im, struct snap *s, json_t *kv, int del,
    int sorted_append)
{
	const uint8_t *key;
	uint8_t *k, *v = NULL, db;
	size_t klen, vlen, keylen;
	struct ent *e;
	int64_t mod = jint(json_object_get(kv, "mod_revision"));
	int r = 0;

	if (mod > s->rev)
		s->rev = mod;
	if ((k = unb64(json_object_get(kv, "key"), &klen)) == NULL)
		return P8V_ERR_STORE;
	if (split_key(im, k, klen, &db, &key, &keylen) != 0 ||
	    keylen > STORE_MAX_KEY_BYTES)
		goto out;
	if (del) {
		(void)snap_del(s, db, key, keylen);
		goto out;
	}
	r = P8V_ERR_STORE;
	if ((v = unb64(json_object_get(kv, "value"), &vlen)) == NULL)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((e = ent_new(db, key, keylen, v, vlen, mod)) == NULL)
		goto out;
	if (sorted_append) {
		if (s->n == s->cap) {
			struct ent **ne = realloc(s->e,
			    s->cap * 2 * sizeof(*ne));

			if (ne == NULL) {
				ent_unref(e);
				goto out;
			}
			s->e = ne;
			s->cap *= 2;
		}
		s->e[s->n++] = e;
	} else if ((r = snap_set(s, e)) != 0) {
		ent_unref(e);
		goto out;
	}
	r = 0;
 out:
	free(k);
	free(v);
	return r;
}

/* Load the whole prefix at one revision into a new snapshot. */
static int
load(struct store_impl *im, struct snap **out)
{
	json_t *req = NULL, *resp = NULL, *kvs, *kv, *start;
	struct snap *s;
	int64_t rev = 0;
	size_t i;
	int r = P8V_ERR_ALLOC, more;

	*out = NULL;
	if ((s = snap_new(256)) == NULL)
		return P8V_ERR_ALLOC;
	start = ekey(im, -1, NULL, 0);
	do {
		req = json_pack("{s:o, s:o, s:s}", "key", start, "range_end",
		    ekey_end(im, -1), "limit", "1000");
		start = NULL;
		if (req == NULL)
			goto out;
		if (rev != 0)
			json_object_set_new(req, "revision",
			    json_integer(rev));
		if ((r = call(im, "/v3/kv/range", req, 1, &resp)) != 0)
			goto out;
		if (rev == 0)
			rev = jint(json_object_get(json_object_get(resp,
			    "header"), "revision"));
		kvs = json_object_get(resp, "kvs");
		json_array_foreach(kvs, i, kv)
			if ((r = apply_kv(im, s, kv, 0, 1)) != 0)
				goto out;
		more = json_is_true(json_object_get(resp, "more")) &&
		    json_array_size(kvs) > 0;
		if (more) {
			size_t kl;
			uint8_t *k = unb64(json_object_get(json_array_get(kvs,
			    json_array_size(kvs) - 1), "key"), &kl);

			r = P8V_ERR_ALLOC;
			if (k == NULL)
				goto out;
			k[kl] = '\0';   /* unb64 leaves room: next key */
			start = b64_json(k, kl + 1, NULL, 0, NULL, 0);
			free(k);
		}
		json_decref(req);
		json_decref(resp);
		req = resp = NULL;
	} while (more);
	qsort(s->e, s->n, sizeof(*s->e), ent_qsort_cmp);
	s->rev = rev;
	*out = s;
	s = NULL;
	r = 0;
 out:
	json_decref(start);
	json_decref(req);
	json_decref(resp);
	snap_unref(s);
	return r;
}

struct watch_ctx {
	struct store_impl *im;
	struct buf b;
	int reload;             /* compacted: load again */
	int created;            /* the watch was established */
	int failed;             /* etcd refused the watch */
};

/* Apply one watch response (a line of the stream). 0 or -1 (stop). */
static int
watch_line(struct watch_ctx *w, const char *line, size_t n)
{
	struct store_impl *im = w->im;
	json_t *j, *res, *evs, *ev;
	struct snap *cur, *s = NULL;
	int64_t rev;
	size_t i;
	int r = -1;

	if ((j = json_loadb(line, n, 0, NULL)) == NULL)
		return -1;
	if ((res = json_object_get(j, "result")) == NULL) {
		log_warnf("store_etcd", "etcd watch error: %.200s", line);
		w->failed = 1;
		goto out;
	}
	if (jint(json_object_get(res, "compact_revision")) != 0) {
		log_warnf("store_etcd_reload", "the watch's revision was "
		    "compacted: loading the prefix again");
		w->reload = 1;
		goto out;
	}
	if (json_is_true(json_object_get(res, "canceled"))) {
		w->failed = 1;
		goto out;
	}
	if (json_is_true(json_object_get(res, "created"))) {
		w->created = 1;
		pthread_mutex_lock(&im->mu);
		if (im->down_since_ms != 0)
			log_infof("store_etcd_watch", "the etcd watch is back "
			    "after %" PRId64 " ms", now_ms() - im->down_since_ms);
		im->connected = 1;
		im->down_since_ms = 0;
		pthread_cond_broadcast(&im->cond);
		pthread_mutex_unlock(&im->mu);
		r = 0;
		goto out;
	}
	evs = json_object_get(res, "events");
	if (json_array_size(evs) == 0) {
		/* A progress notification: every event up to its revision
		 * has been sent. */
		rev = jint(json_object_get(json_object_get(res, "header"),
		    "revision"));
		cur = current_snap(im);
		if (rev > cur->rev && (s = snap_copy(cur)) != NULL) {
			s->rev = rev;
			publish(im, s);
		}
		snap_unref(cur);
		r = 0;
		goto out;
	}
	cur = current_snap(im);
	s = snap_copy(cur);
	snap_unref(cur);
	if (s == NULL)
		goto out;
	json_array_foreach(evs, i, ev) {
		const char *type = json_string_value(json_object_get(ev,
		    "type"));

		if (apply_kv(im, s, json_object_get(ev, "kv"),
		    type != NULL && strcmp(type, "DELETE") == 0, 0) != 0) {
			snap_unref(s);
			w->reload = 1;
			goto out;
		}
	}
	publish(im, s);
	r = 0;
 out:
	json_decref(j);
	return r;
}

static size_t
watch_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct watch_ctx *w = arg;
	size_t n = size * nmemb, start = 0, i;

	if (buf_write(data, size, nmemb, &w->b) != n)
		return 0;
	for (i = 0; i < w->b.n; i++) {
		if (w->b.p[i] != '\n')
			continue;
		if (i > start && watch_line(w, w->b.p + start, i - start) != 0)
			return 0;
		start = i + 1;
	}
	memmove(w->b.p, w->b.p + start, w->b.n - start);
	w->b.n -= start;
	return n;
}

static int
watch_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
    curl_off_t un)
{
	struct store_impl *im = arg;

	return __atomic_load_n(&im->stop, __ATOMIC_RELAXED) ||
	    __atomic_load_n(&im->stalled, __ATOMIC_RELAXED) ? 1 : 0;
}

/* Stream one watch from the mirror's next revision at endpoint ep until it
 * breaks. Returns with w->reload set when the mirror must be reloaded. */
static void
watch_once(struct store_impl *im, size_t ep, struct watch_ctx *w)
{
	char url[1024], auth[1024];
	struct curl_slist *hdr = NULL;
	json_t *req;
	char *body = NULL, *tok = NULL;
	CURL *c;
	int64_t from = __atomic_load_n(&im->applied_rev, __ATOMIC_ACQUIRE) + 1;

	if (im->user != NULL) {
		if (authenticate(im, ep) != 0)
			return;
		pthread_mutex_lock(&im->tok_mu);
		tok = im->token != NULL ? strdup(im->token) : NULL;
		pthread_mutex_unlock(&im->tok_mu);
	}
	req = json_pack("{s:{s:o, s:o, s:I, s:b}}", "create_request", "key",
	    ekey(im, -1, NULL, 0), "range_end", ekey_end(im, -1),
	    "start_revision", (json_int_t)from, "progress_notify", 1);
	if (req != NULL)
		body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (body == NULL || (c = curl_easy_init()) == NULL) {
		free(body);
		free(tok);
		return;
	}
	snprintf(url, sizeof(url), "%s/v3/watch", im->eps[ep]);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, ETCD_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 2L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, watch_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, watch_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, im);
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	if (tok != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: %s", tok);
		hdr = curl_slist_append(hdr, auth);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	setup_tls(im, c);
	(void)curl_easy_perform(c);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdr);
	free(body);
	free(tok);
}

static void *
watcher(void *arg)
{
	struct store_impl *im = arg;
	struct watch_ctx w;
	struct snap *s;
	unsigned int ep;
	size_t failures = 0;

	while (!__atomic_load_n(&im->stop, __ATOMIC_RELAXED)) {
		memset(&w, 0, sizeof(w));
		w.im = im;
		ep = __atomic_load_n(&im->cur_ep, __ATOMIC_RELAXED) %
		    im->n_eps;
		watch_once(im, ep, &w);
		free(w.b.p);
		__atomic_store_n(&im->stalled, 0, __ATOMIC_RELAXED);
		pthread_mutex_lock(&im->mu);
		if (im->connected && !__atomic_load_n(&im->stop,
		    __ATOMIC_RELAXED))
			log_warnf("store_etcd_watch", "the etcd watch on %s "
			    "ended at revision %" PRId64 "; resuming",
			    im->eps[ep], im->snap->rev);
		if (im->connected || im->down_since_ms == 0)
			im->down_since_ms = now_ms();
		im->connected = 0;
		pthread_mutex_unlock(&im->mu);
		if (__atomic_load_n(&im->stop, __ATOMIC_RELAXED))
			break;
		if (w.reload) {
			if (load(im, &s) == 0) {
				/* A reload may not go back (the generation
				 * never does). */
				if (s->rev < __atomic_load_n(&im->applied_rev,
				    __ATOMIC_ACQUIRE))
					s->rev = im->applied_rev;
				publish(im, s);
			}
			continue;
		}
		/* Next endpoint at once (the current one may be the dead
		 * one); a pause once every endpoint failed in a row. */
		__atomic_store_n(&im->cur_ep, (ep + 1) % im->n_eps,
		    __ATOMIC_RELAXED);
		if (w.created)
			failures = 0;
		if (++failures >= im->n_eps) {
			failures = 0;
			sleep_ms(ETCD_RETRY_PAUSE_MS);
		}
	}
	return NULL;
}

static int read_marker(struct store_impl *im, int64_t rev, char *val,
    size_t vsz, int64_t *mod, int64_t *head);

/*
 * Once a second, the commit marker read linearizably: etcd's last commit
 * under the prefix. A mirror that has not applied it for
 * STORE_UNREADY_AFTER_MS has a watch that is stuck (connected, silent):
 * it is dropped and opened again. An etcd that does not answer the read
 * for as long (quorum lost, this node cut off while its watch connection
 * looks alive) makes the store not ready (etcd_ready).
 */
static void *
prober(void *arg)
{
	struct store_impl *im = arg;
	char val[128];
	int64_t mod, head, now, start;
	int i, r;

	while (!__atomic_load_n(&im->stop, __ATOMIC_RELAXED)) {
		for (i = 0; i < ETCD_PROBE_MS / 50 &&
		    !__atomic_load_n(&im->stop, __ATOMIC_RELAXED); i++)
			sleep_ms(50);
		if (__atomic_load_n(&im->stop, __ATOMIC_RELAXED))
			break;
		pthread_mutex_lock(&im->mu);
		im->probe_started_ms = start = now_ms();
		pthread_mutex_unlock(&im->mu);
		r = read_marker(im, 0, val, sizeof(val), &mod, &head);
		now = now_ms();
		pthread_mutex_lock(&im->mu);
		im->probe_started_ms = 0;
		if (r != 0) {
			if (im->probe_fail_since_ms == 0)
				im->probe_fail_since_ms = start;
		} else {
			im->probe_fail_since_ms = 0;
			if (mod <= im->snap->rev)
				im->behind_since_ms = 0;
			else if (im->behind_since_ms == 0)
				im->behind_since_ms = now;
			else if (now - im->behind_since_ms >
			    STORE_UNREADY_AFTER_MS && im->connected) {
				log_warnf("store_etcd_watch", "the etcd watch "
				    "is stuck at revision %" PRId64 " (etcd "
				    "has %" PRId64 "): opening it again",
				    im->snap->rev, mod);
				__atomic_store_n(&im->stalled, 1,
				    __ATOMIC_RELAXED);
				im->behind_since_ms = now;
			}
		}
		pthread_mutex_unlock(&im->mu);
	}
	return NULL;
}

/* ---- open and close ---- */

static char *
read_password(const char *path)
{
	char buf[1024];
	FILE *f;
	size_t n;
	char *p = NULL;

	if ((f = fopen(path, "re")) == NULL) {
		log_errorf("store_etcd", "etcd password file %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	p = strdup(buf);
	sodium_memzero(buf, sizeof(buf));
	return p;
}

static void
impl_free(struct store_impl *im, int forked)
{
	size_t i;

	if (im == NULL)
		return;
	for (i = 0; i < im->n_eps; i++)
		free(im->eps[i]);
	free(im->eps);
	free(im->cacert);
	free(im->cert);
	free(im->key);
	free(im->user);
	if (im->password != NULL) {
		sodium_memzero(im->password, strlen(im->password));
		free(im->password);
	}
	free(im->token);
	if (!forked)
		for (i = 0; i < im->n_pool; i++)
			curl_easy_cleanup(im->pool[i]);
	snap_unref(im->snap);
	pthread_mutex_destroy(&im->tok_mu);
	pthread_mutex_destroy(&im->mu);
	pthread_cond_destroy(&im->cond);
	pthread_mutex_destroy(&im->wlock);
	pthread_mutex_destroy(&im->pool_mu);
	free(im);
}

static char *
dup_or_null(const char *s)
{
	return s == NULL || *s == '\0' ? NULL : strdup(s);
}

/* etcd://HOST:PORT[,HOST:PORT...]/PREFIX */
static int
parse_url(struct store_impl *im, const char *url, int tls)
{
	const char *p, *slash, *e;
	size_t n, cap = 4;
	char *hp;

	if (strncmp(url, STORE_ETCD_SCHEME, strlen(STORE_ETCD_SCHEME)) != 0)
		return P8V_ERR_INVALID_ARGUMENT;
	p = url + strlen(STORE_ETCD_SCHEME);
	if ((slash = strchr(p, '/')) == NULL || slash == p)
		return P8V_ERR_INVALID_ARGUMENT;
	n = strlen(slash + 1);
	while (n > 0 && slash[n] == '/')
		n--;
	if (n == 0 || n > ETCD_MAX_PREFIX)
		return P8V_ERR_INVALID_ARGUMENT;
	memcpy(im->prefix, slash + 1, n);
	im->prefix[n] = '/';
	im->prefix[n + 1] = '\0';
	im->plen = n + 1;
	if ((im->eps = calloc(cap, sizeof(*im->eps))) == NULL)
		return P8V_ERR_ALLOC;
	while (p < slash) {
		e = memchr(p, ',', (size_t)(slash - p));
		if (e == NULL)
			e = slash;
		if (e == p || (size_t)(e - p) > 512)
			return P8V_ERR_INVALID_ARGUMENT;
		if (im->n_eps == cap) {
			char **ne = realloc(im->eps, cap * 2 * sizeof(*ne));

			if (ne == NULL)
				return P8V_ERR_ALLOC;
			im->eps = ne;
			cap *= 2;
		}
		if ((hp = malloc((size_t)(e - p) + 16)) == NULL)
			return P8V_ERR_ALLOC;
		snprintf(hp, (size_t)(e - p) + 16, "%s://%.*s",
		    tls ? "https" : "http", (int)(e - p), p);
		im->eps[im->n_eps++] = hp;
		p = e + (e < slash);
	}
	return im->n_eps > 0 ? 0 : P8V_ERR_INVALID_ARGUMENT;
}

static int
etcd_open(const char *location, const struct store_options *opts,
    struct store_impl **out)
{
	struct store_impl *im;
	uint8_t rnd[16];
	int r = P8V_ERR_ALLOC;

	*out = NULL;
	pthread_once(&curl_once, curl_init_once);
	if ((im = calloc(1, sizeof(*im))) == NULL)
		return P8V_ERR_ALLOC;
	pthread_mutex_init(&im->tok_mu, NULL);
	pthread_mutex_init(&im->mu, NULL);
	pthread_cond_init(&im->cond, NULL);
	pthread_mutex_init(&im->wlock, NULL);
	pthread_mutex_init(&im->pool_mu, NULL);
	if ((r = parse_url(im, location, opts->etcd_cacert != NULL ||
	    opts->etcd_cert != NULL)) != 0) {
		if (r == P8V_ERR_INVALID_ARGUMENT)
			log_errorf("store_etcd", "bad etcd store URL %s: want "
			    "etcd://HOST:PORT[,HOST:PORT...]/PREFIX", location);
		goto out;
	}
	r = P8V_ERR_ALLOC;
	im->cacert = dup_or_null(opts->etcd_cacert);
	im->cert = dup_or_null(opts->etcd_cert);
	im->key = dup_or_null(opts->etcd_key);
	im->user = dup_or_null(opts->etcd_user);
	if (im->user != NULL) {
		r = P8V_ERR_IO;
		if (opts->etcd_password_file == NULL ||
		    (im->password = read_password(opts->etcd_password_file)) ==
		    NULL) {
			if (opts->etcd_password_file == NULL)
				log_errorf("store_etcd", "an etcd user needs "
				    "--etcd-password-file");
			goto out;
		}
	}
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(im->node, sizeof(im->node), rnd, sizeof(rnd));
	if ((r = load(im, &im->snap)) != 0) {
		log_errorf("store_etcd", "cannot load the etcd prefix %s from "
		    "%s: %s", im->prefix, location, p8v_strerror(r));
		goto out;
	}
	im->applied_rev = im->snap->rev;
	if (pthread_create(&im->watcher, NULL, watcher, im) != 0) {
		r = P8V_ERR_INTERNAL;
		goto out;
	}
	im->watcher_started = 1;
	if (pthread_create(&im->prober, NULL, prober, im) == 0)
		im->prober_started = 1;
	*out = im;
	im = NULL;
	r = 0;
 out:
	impl_free(im, 0);
	return r;
}

static void
etcd_close(struct store_impl *im, int forked)
{
	if (im == NULL)
		return;
	if (!forked && im->watcher_started) {
		__atomic_store_n(&im->stop, 1, __ATOMIC_RELAXED);
		pthread_join(im->watcher, NULL);
		if (im->prober_started)
			pthread_join(im->prober, NULL);
	}
	impl_free(im, forked);
}

/* ---- transactions ---- */

static struct snap *
txn_snap(const struct store_txn *txn)
{
	const struct wtx *w;

	if (!txn->writable)
		return txn->handle;
	w = txn->handle;
	return w->priv != NULL ? w->priv : w->base;
}

static int
etcd_begin(struct store_impl *im, struct store_txn *txn)
{
	struct wtx *w;
	int64_t deadline;

	if (!txn->writable) {
		txn->handle = current_snap(im);
		return 0;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return P8V_ERR_ALLOC;
	/* A write needs a live watch: its commit waits for the mirror. */
	deadline = now_ms() + ETCD_CONNECT_WAIT_MS;
	pthread_mutex_lock(&im->mu);
	while (!im->connected && now_ms() < deadline) {
		pthread_mutex_unlock(&im->mu);
		sleep_ms(20);
		pthread_mutex_lock(&im->mu);
	}
	if (!im->connected) {
		pthread_mutex_unlock(&im->mu);
		free(w);
		log_warnf("store_unavailable", "no etcd watch: refusing a "
		    "write");
		return P8V_ERR_STORE_UNAVAILABLE;
	}
	pthread_mutex_unlock(&im->mu);
	pthread_mutex_lock(&im->wlock);
	w->base = current_snap(im);
	txn->handle = w;
	return 0;
}

static void
release(struct store_txn *txn)
{
	struct wtx *w;

	if (txn->handle == NULL)
		return;
	if (!txn->writable) {
		snap_unref(txn->handle);
	} else {
		w = txn->handle;
		snap_unref(w->base);
		snap_unref(w->priv);
		free(w);
		pthread_mutex_unlock(&txn->impl->wlock);
	}
	txn->handle = NULL;
}

static int
etcd_end(struct store_txn *txn)
{
	release(txn);
	return 0;
}

/* The private copy a write goes to. */
static struct snap *
wsnap(struct store_txn *txn)
{
	struct wtx *w = txn->handle;

	if (w->priv == NULL)
		w->priv = snap_copy(w->base);
	return w->priv;
}

struct ops {
	json_t *arr;
	size_t n, bytes;
};

static int
add_put(struct store_impl *im, struct ops *o, const struct ent *e)
{
	json_t *op;

	op = json_pack("{s:{s:o, s:o}}", "request_put", "key",
	    ekey(im, e->db, e->key, e->klen), "value",
	    b64_json(e->val, e->vlen, NULL, 0, NULL, 0));
	o->n++;
	o->bytes += e->klen + e->vlen;
	return op == NULL ? P8V_ERR_ALLOC : json_array_append_new(o->arr, op);
}

static int
add_del(struct store_impl *im, struct ops *o, const struct ent *e, int db)
{
	json_t *op;

	if (e != NULL)
		op = json_pack("{s:{s:o}}", "request_delete_range", "key",
		    ekey(im, e->db, e->key, e->klen));
	else
		op = json_pack("{s:{s:o, s:o}}", "request_delete_range", "key",
		    ekey(im, db, NULL, 0), "range_end", ekey_end(im, db));
	o->n++;
	o->bytes += e != NULL ? e->klen : 0;
	return op == NULL ? P8V_ERR_ALLOC : json_array_append_new(o->arr, op);
}

/* The operations turning base into priv (a db emptied with more than one
 * entry: one range delete). */
static int
diff(struct store_impl *im, const struct snap *base, const struct snap *priv,
    struct ops *o)
{
	size_t i = 0, j = 0, bn[STORE_DB_COUNT] = { 0 },
	    pn[STORE_DB_COUNT] = { 0 };
	int c, r, d, ranged[STORE_DB_COUNT] = { 0 };

	for (i = 0; i < base->n; i++)
		bn[base->e[i]->db]++;
	for (i = 0; i < priv->n; i++)
		pn[priv->e[i]->db]++;
	for (d = 0; d < STORE_DB_COUNT; d++)
		if (pn[d] == 0 && bn[d] > 1) {
			ranged[d] = 1;
			if ((r = add_del(im, o, NULL, d)) != 0)
				return r;
		}
	i = 0;
	while (i < base->n || j < priv->n) {
		if (i == base->n)
			c = 1;
		else if (j == priv->n)
			c = -1;
		else
			c = ent_cmp(base->e[i]->db, base->e[i]->key,
			    base->e[i]->klen, priv->e[j]);
		if (c < 0) {            /* deleted */
			if (!ranged[base->e[i]->db] &&
			    (r = add_del(im, o, base->e[i], 0)) != 0)
				return r;
			i++;
		} else if (c > 0) {     /* added */
			if ((r = add_put(im, o, priv->e[j])) != 0)
				return r;
			j++;
		} else {
			if (base->e[i] != priv->e[j] &&
			    (r = add_put(im, o, priv->e[j])) != 0)
				return r;
			i++;
			j++;
		}
	}
	return 0;
}

enum outcome { LANDED, NOT_LANDED, UNKNOWN };

/* The value and mod revision of the marker (at revision rev, 0: now);
 * *head gets the answer's header revision. 0 or an error. */
static int
read_marker(struct store_impl *im, int64_t rev, char *val, size_t vsz,
    int64_t *mod, int64_t *head)
{
	json_t *req, *resp = NULL, *kv;
	uint8_t *v;
	size_t vlen;
	int r;

	*mod = 0;
	val[0] = '\0';
	if ((req = json_pack("{s:o}", "key", ekey(im, -1, ETCD_MARKER,
	    strlen(ETCD_MARKER)))) == NULL)
		return P8V_ERR_ALLOC;
	if (rev != 0)
		json_object_set_new(req, "revision", json_integer(rev));
	r = call(im, "/v3/kv/range", req, 1, &resp);
	json_decref(req);
	if (r != 0)
		return r == E_UNKNOWN ? P8V_ERR_STORE_UNAVAILABLE : r;
	*head = jint(json_object_get(json_object_get(resp, "header"),
	    "revision"));
	if ((kv = json_array_get(json_object_get(resp, "kvs"), 0)) != NULL) {
		*mod = jint(json_object_get(kv, "mod_revision"));
		if ((v = unb64(json_object_get(kv, "value"), &vlen)) != NULL) {
			if (vlen >= vsz)
				vlen = vsz - 1;
			memcpy(val, v, vlen);
			val[vlen] = '\0';
			free(v);
		}
	}
	json_decref(resp);
	return 0;
}

/* Did the commit named id, guarded on base_rev, land? *rev: where. */
static enum outcome
read_back(struct store_impl *im, const char *id, int64_t base_rev,
    int64_t *rev)
{
	char val[128];
	int64_t mod, head, at, h2;

	if (read_marker(im, 0, val, sizeof(val), &mod, &head) != 0)
		return UNKNOWN;
	if (strcmp(val, id) == 0) {
		*rev = mod;
		return LANDED;
	}
	if (mod <= base_rev)
		return NOT_LANDED;
	/* The first commit after base_rev is the only one that can be
	 * ours: find the marker's value there. */
	for (at = base_rev + 1; at <= head &&
	    at <= base_rev + ETCD_READBACK_MAX_REVS; at++) {
		if (read_marker(im, at, val, sizeof(val), &mod, &h2) != 0)
			return UNKNOWN;
		if (mod > base_rev) {
			*rev = mod;
			return strcmp(val, id) == 0 ? LANDED : NOT_LANDED;
		}
	}
	return UNKNOWN;
}

static int
etcd_commit(struct store_txn *txn)
{
	struct store_impl *im = txn->impl;
	struct wtx *w = txn->handle;
	struct ops o = { 0 };
	json_t *req = NULL, *resp = NULL, *cmp;
	char id[64];
	int64_t base_rev = w->base->rev, rev = 0;
	int r = P8V_ERR_ALLOC;

	if (w->priv == NULL) {          /* nothing written */
		r = 0;
		goto out;
	}
	if ((o.arr = json_array()) == NULL)
		goto out;
	if ((r = diff(im, w->base, w->priv, &o)) != 0)
		goto out;
	if (o.n == 0) {
		r = 0;
		goto out;
	}
	if (o.n > ETCD_MAX_TXN_OPS || o.bytes > ETCD_MAX_TXN_BYTES) {
		log_errorf("store_etcd", "a transaction of %zu operations, %zu "
		    "bytes is above etcd's limits (%d, %zu)", o.n, o.bytes,
		    ETCD_MAX_TXN_OPS, ETCD_MAX_TXN_BYTES);
		r = P8V_ERR_TOO_LARGE;
		goto out;
	}
	snprintf(id, sizeof(id), "%s-%" PRIu64, im->node,
	    __atomic_add_fetch(&im->txn_seq, 1, __ATOMIC_RELAXED));
	r = P8V_ERR_ALLOC;
	if (json_array_append_new(o.arr, json_pack("{s:{s:o, s:o}}",
	    "request_put", "key", ekey(im, -1, ETCD_MARKER,
	    strlen(ETCD_MARKER)), "value", b64_json(id, strlen(id), NULL, 0,
	    NULL, 0))) != 0)
		goto out;
	cmp = json_pack("[{s:o, s:o, s:s, s:s, s:I}]", "key",
	    ekey(im, -1, NULL, 0), "range_end", ekey_end(im, -1), "target",
	    "MOD", "result", "LESS", "mod_revision", (json_int_t)base_rev + 1);
	if (cmp == NULL || (req = json_pack("{s:o, s:O}", "compare", cmp,
	    "success", o.arr)) == NULL)
		goto out;
	r = call(im, "/v3/kv/txn", req, 0, &resp);
	if (r == 0) {
		rev = jint(json_object_get(json_object_get(resp, "header"),
		    "revision"));
		if (!json_is_true(json_object_get(resp, "succeeded"))) {
			/* Someone committed since base: wait to see it. */
			r = wait_rev(im, base_rev + 1, ETCD_MIRROR_WAIT_MS) == 0 ?
			    STORE_BACKEND_RETRY : P8V_ERR_STORE_UNAVAILABLE;
			goto out;
		}
	} else if (r == E_UNKNOWN) {
		log_warnf("store_etcd", "etcd commit %s: no answer; reading "
		    "back whether it landed", id);
		switch (read_back(im, id, base_rev, &rev)) {
		case LANDED:
			break;
		case NOT_LANDED:
			/* Run again on a fresh snapshot (if another commit
			 * is what moved the marker and the mirror lags, the
			 * next compare fails and waits for it). */
			r = STORE_BACKEND_RETRY;
			goto out;
		default:
			log_errorf("store_unavailable", "etcd commit %s may "
			    "have been applied: etcd cannot tell", id);
			r = P8V_ERR_STORE_UNAVAILABLE;
			goto out;
		}
	} else
		goto out;
	/* Committed: let this process read its own write. */
	if (wait_rev(im, rev, ETCD_MIRROR_WAIT_MS) != 0)
		log_warnf("store_etcd", "the mirror has not reached revision "
		    "%" PRId64 " of this process's commit", rev);
	r = 0;
 out:
	json_decref(o.arr);
	json_decref(req);
	json_decref(resp);
	release(txn);
	return r;
}

static int
etcd_get(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const uint8_t **val, size_t *vlen)
{
	const struct snap *s = txn_snap(txn);
	size_t i = lower_bound(s, (uint8_t)db, key, klen);

	if (i >= s->n || ent_cmp((uint8_t)db, key, klen, s->e[i]) != 0)
		return P8V_ERR_NOT_FOUND;
	*val = s->e[i]->val;
	*vlen = s->e[i]->vlen;
	return 0;
}

static int
etcd_put(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen, unsigned int flags)
{
	struct snap *s;
	struct ent *e;
	const uint8_t *v;
	size_t vl;
	int r;

	if ((flags & STORE_PUT_NO_OVERWRITE) &&
	    etcd_get(txn, db, key, klen, &v, &vl) == 0)
		return P8V_ERR_EXISTS;
	if ((s = wsnap(txn)) == NULL)
		return P8V_ERR_ALLOC;
	if ((e = ent_new((uint8_t)db, key, klen, val, vlen, 0)) == NULL)
		return P8V_ERR_ALLOC;
	if ((r = snap_set(s, e)) != 0)
		ent_unref(e);
	return r;
}

static int
etcd_del(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen)
{
	const uint8_t *v;
	size_t vl;
	struct snap *s;

	if (etcd_get(txn, db, key, klen, &v, &vl) != 0)
		return P8V_ERR_NOT_FOUND;
	if ((s = wsnap(txn)) == NULL)
		return P8V_ERR_ALLOC;
	return snap_del(s, (uint8_t)db, key, klen);
}

static int
etcd_scan(struct store_txn *txn, enum store_db db, const void *start,
    size_t slen, size_t plen, store_scan_cb cb, void *arg)
{
	const struct snap *s = txn_snap(txn);
	size_t i = slen > 0 ? lower_bound(s, (uint8_t)db, start, slen) :
	    lower_bound(s, (uint8_t)db, (const uint8_t *)"", 0);
	const struct ent *e;
	int r;

	for (; i < s->n; i++) {
		e = s->e[i];
		if (e->db != db)
			break;
		if (plen > 0 && (e->klen < plen ||
		    memcmp(e->key, start, plen) != 0))
			break;
		if ((r = cb(e->key, e->klen, e->val, e->vlen, arg)) != 0)
			return r;
	}
	return 0;
}

static int
etcd_last(struct store_txn *txn, enum store_db db, const uint8_t **key,
    size_t *klen, const uint8_t **val, size_t *vlen)
{
	const struct snap *s = txn_snap(txn);
	size_t end = db_end(s, (uint8_t)db);
	const struct ent *e;

	if (end == 0 || s->e[end - 1]->db != db)
		return P8V_ERR_NOT_FOUND;
	e = s->e[end - 1];
	*key = e->key;
	*klen = e->klen;
	*val = e->val;
	*vlen = e->vlen;
	return 0;
}

static int
etcd_count(struct store_txn *txn, enum store_db db, uint64_t *n)
{
	const struct snap *s = txn_snap(txn);

	*n = db_end(s, (uint8_t)db) -
	    lower_bound(s, (uint8_t)db, (const uint8_t *)"", 0);
	return 0;
}

static int
etcd_clear(struct store_txn *txn, enum store_db db)
{
	struct snap *s;
	size_t a, b, i;

	if ((s = wsnap(txn)) == NULL)
		return P8V_ERR_ALLOC;
	a = lower_bound(s, (uint8_t)db, (const uint8_t *)"", 0);
	b = db_end(s, (uint8_t)db);
	for (i = a; i < b; i++)
		ent_unref(s->e[i]);
	memmove(s->e + a, s->e + b, (s->n - b) * sizeof(*s->e));
	s->n -= b - a;
	return 0;
}

static int
etcd_generation(struct store_impl *im, uint64_t *gen)
{
	*gen = (uint64_t)__atomic_load_n(&im->applied_rev, __ATOMIC_ACQUIRE);
	return 0;
}

static uint64_t
etcd_txn_generation(const struct store_txn *txn)
{
	/* A write: the least revision its commit can make (a later one
	 * only makes a cache reload once more). */
	return (uint64_t)(txn->writable ?
	    ((const struct wtx *)txn->handle)->base->rev + 1 :
	    ((const struct snap *)txn->handle)->rev);
}

static int
etcd_stats(struct store_impl *im, struct store_stats *st)
{
	st->remote = 1;
	st->round_trips = __atomic_load_n(&im->round_trips, __ATOMIC_RELAXED);
	st->revision = (uint64_t)__atomic_load_n(&im->applied_rev,
	    __ATOMIC_ACQUIRE);
	pthread_mutex_lock(&im->mu);
	st->watch_down_ms = im->connected || im->down_since_ms == 0 ? 0 :
	    (uint64_t)(now_ms() - im->down_since_ms);
	pthread_mutex_unlock(&im->mu);
	return 0;
}

static int
etcd_ready(struct store_impl *im)
{
	int ready;

	int64_t now = now_ms();

	pthread_mutex_lock(&im->mu);
	ready = (im->connected || im->down_since_ms == 0 ||
	    now - im->down_since_ms <= STORE_UNREADY_AFTER_MS) &&
	    (im->probe_fail_since_ms == 0 ||
	    now - im->probe_fail_since_ms <= STORE_UNREADY_AFTER_MS) &&
	    (im->probe_started_ms == 0 ||
	    now - im->probe_started_ms <= STORE_UNREADY_AFTER_MS) &&
	    (im->behind_since_ms == 0 ||
	    now - im->behind_since_ms <= STORE_UNREADY_AFTER_MS);
	pthread_mutex_unlock(&im->mu);
	return ready;
}

/* ---- locks: a key created only if absent, on a lease kept alive ---- */

struct store_lock {
	struct store_impl *im;
	char lease[32];         /* the lease id, decimal */
	unsigned int ttl_s;
	pthread_t keeper;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done;
};

/* Locks live beside the prefix, not under it ("PREFIX.locks/NAME"): a
 * lock taken or expiring is no commit of the store and must not fail
 * writers' compares on the prefix. */
static json_t *
lock_key(const struct store_impl *im, const char *name)
{
	char buf[ETCD_MAX_PREFIX + 160];

	snprintf(buf, sizeof(buf), "%.*s.locks/%s", (int)im->plen - 1,
	    im->prefix, name);
	return b64_json(buf, strlen(buf), NULL, 0, NULL, 0);
}

static void
lease_revoke(struct store_impl *im, const char *lease)
{
	json_t *req, *resp = NULL;

	if ((req = json_pack("{s:s}", "ID", lease)) == NULL)
		return;
	if (call(im, "/v3/lease/revoke", req, 1, &resp) != 0)
		log_warnf("store_etcd", "could not revoke etcd lease %s: it "
		    "expires by itself", lease);
	json_decref(req);
	json_decref(resp);
}

/* Keeps the lease alive (a third of its TTL apart) until released. */
static void *
lock_keeper(void *arg)
{
	struct store_lock *l = arg;
	struct timespec ts;
	json_t *req, *resp;

	pthread_mutex_lock(&l->mu);
	while (!l->done) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(l->ttl_s * 1000 / 3 % 1000) * 1000000L;
		ts.tv_sec += l->ttl_s / 3 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (pthread_cond_timedwait(&l->cond, &l->mu, &ts) == 0 ||
		    l->done)
			continue;
		pthread_mutex_unlock(&l->mu);
		resp = NULL;
		if ((req = json_pack("{s:s}", "ID", l->lease)) != NULL &&
		    call(l->im, "/v3/lease/keepalive", req, 1, &resp) != 0)
			log_warnf("store_etcd", "etcd lease %s not renewed",
			    l->lease);
		json_decref(req);
		json_decref(resp);
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static int
etcd_lock_take(struct store_impl *im, const char *name, unsigned int ttl_s,
    struct store_lock **out)
{
	struct store_lock *l = NULL;
	json_t *req = NULL, *resp = NULL, *kv;
	char id[64];
	const char *lease;
	uint8_t *v;
	size_t vlen;
	int r = P8V_ERR_ALLOC, granted = 0;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return P8V_ERR_ALLOC;
	l->im = im;
	l->ttl_s = ttl_s < 3 ? 3 : ttl_s;
	if ((req = json_pack("{s:I}", "TTL", (json_int_t)l->ttl_s)) == NULL)
		goto out;
	if ((r = call(im, "/v3/lease/grant", req, 1, &resp)) != 0)
		goto out;
	r = P8V_ERR_STORE;
	if ((lease = json_string_value(json_object_get(resp, "ID"))) == NULL ||
	    strlen(lease) >= sizeof(l->lease))
		goto out;
	snprintf(l->lease, sizeof(l->lease), "%s", lease);
	granted = 1;
	json_decref(req);
	json_decref(resp);
	resp = NULL;
	snprintf(id, sizeof(id), "%s-%" PRIu64, im->node,
	    __atomic_add_fetch(&im->txn_seq, 1, __ATOMIC_RELAXED));
	r = P8V_ERR_ALLOC;
	if ((req = json_pack("{s:[{s:o, s:s, s:s, s:i}], s:[{s:{s:o, s:o, "
	    "s:s}}]}", "compare", "key", lock_key(im, name), "target",
	    "CREATE", "result", "EQUAL", "create_revision", 0, "success",
	    "request_put", "key", lock_key(im, name), "value",
	    b64_json(id, strlen(id), NULL, 0, NULL, 0), "lease",
	    l->lease)) == NULL)
		goto out;
	r = call(im, "/v3/kv/txn", req, 0, &resp);
	if (r == E_UNKNOWN) {
		/* Ours if the key holds our id. */
		json_decref(req);
		json_decref(resp);
		resp = NULL;
		r = P8V_ERR_ALLOC;
		if ((req = json_pack("{s:o}", "key", lock_key(im, name))) ==
		    NULL)
			goto out;
		if ((r = call(im, "/v3/kv/range", req, 1, &resp)) != 0)
			goto out;
		kv = json_array_get(json_object_get(resp, "kvs"), 0);
		r = P8V_ERR_BUSY;
		if (kv == NULL || (v = unb64(json_object_get(kv, "value"),
		    &vlen)) == NULL)
			goto out;
		if (vlen != strlen(id) || memcmp(v, id, vlen) != 0) {
			free(v);
			goto out;
		}
		free(v);
	} else if (r != 0) {
		goto out;
	} else if (!json_is_true(json_object_get(resp, "succeeded"))) {
		r = P8V_ERR_BUSY;
		goto out;
	}
	/* Held. What the previous holder committed before it let go must be
	 * in the mirror before the caller looks (else it would mint again):
	 * the marker names the last commit; wait for the mirror to show it. */
	{
		char val[128];
		int64_t mod = 0, head = 0;

		if (read_marker(im, 0, val, sizeof(val), &mod, &head) != 0 ||
		    wait_rev(im, mod, ETCD_MIRROR_WAIT_MS) != 0) {
			r = P8V_ERR_STORE_UNAVAILABLE;
			goto out;
		}
	}
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cond, NULL);
	if (pthread_create(&l->keeper, NULL, lock_keeper, l) != 0) {
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cond);
		r = P8V_ERR_INTERNAL;
		goto out;
	}
	*out = l;
	l = NULL;
	r = 0;
 out:
	if (r == E_UNKNOWN)
		r = P8V_ERR_STORE_UNAVAILABLE;
	if (l != NULL && granted)
		lease_revoke(im, l->lease);
	free(l);
	json_decref(req);
	json_decref(resp);
	return r;
}

static void
etcd_lock_release(struct store_impl *im, struct store_lock *l)
{
	pthread_mutex_lock(&l->mu);
	l->done = 1;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->keeper, NULL);
	/* Revoking the lease deletes the lock key with it. */
	lease_revoke(im, l->lease);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cond);
	free(l);
}

static int
etcd_wait_change(struct store_impl *im, uint64_t gen, int ms)
{
	(void)wait_rev(im, (int64_t)gen + 1, ms);
	return 0;
}

const struct store_backend store_backend_etcd = {
	.name = "etcd",
	.max_txn_ops = ETCD_MAX_TXN_OPS,
	.max_txn_bytes = ETCD_MAX_TXN_BYTES,
	.open = etcd_open,
	.close = etcd_close,
	.begin = etcd_begin,
	.commit = etcd_commit,
	.end = etcd_end,
	.get = etcd_get,
	.put = etcd_put,
	.del = etcd_del,
	.scan = etcd_scan,
	.last = etcd_last,
	.count = etcd_count,
	.clear = etcd_clear,
	.generation = etcd_generation,
	.txn_generation = etcd_txn_generation,
	.stats = etcd_stats,
	.lock_take = etcd_lock_take,
	.lock_release = etcd_lock_release,
	.wait_change = etcd_wait_change,
	.ready = etcd_ready,
};

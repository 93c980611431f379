---@meta
-- LuaLS annotations for the status targets (buildbot.status) and web auth (buildbot.util).
-- An option that can also be given by position (a worker's name, IRC's host and nick) is
-- optional in its options table; the master reports it when it is given neither way.

---@class buildbot.status
status = {}

---@alias buildbot.Port integer|string A port number or "tcp:PORT:interface=ADDR".
---@alias buildbot.AuthzAction boolean|"auth"|fun(username: string, object?: table): boolean A function gets the builder, build, build request or worker as a table.

---@class buildbot.status.WebStatusOptions
---@field name? string Service name (default "WebStatus").
---@field http_port? buildbot.Port
---@field distrib_port? buildbot.Port Not implemented yet.
---@field allowForce? boolean
---@field public_html? string Directory of static files (default "public_html").
---@field site? any Not implemented yet.
---@field numbuilds? integer Builds shown by default (20).
---@field num_events? integer Waterfall events shown by default (200).
---@field num_events_max? integer
---@field auth? any
---@field order_console_by_time? boolean
---@field changecommentlink? table|function {regex, replacement, title}, project -> triple, or a function.
---@field revlink? string|table|function Format with %s, repository -> format, or a function.
---@field projects? table<string, string>|function
---@field repositories? table<string, string>|function
---@field authz? buildbot.util.Authz
---@field logRotateLength? integer Old name of rotateLength.
---@field rotateLength? integer
---@field maxRotatedFiles? integer
---@field change_hook_dialects? table<string, boolean|table>
---@field change_hook_auth? string[] e.g. {"file:changehook.passwd"}
---@field provide_feeds? string[] The feeds served, of "rss", "atom", "json" (all three by default).
---@field jinja_loaders? any Refused: use template_dirs.
---@field template_dirs? string[] Directories whose templates override the built-in pages.

---@param http_port buildbot.Port|buildbot.status.WebStatusOptions
---@param options? buildbot.status.WebStatusOptions
---@return buildbot.StatusTarget
function status.WebStatus(http_port, options) end

---The 0.8 name of the web status: the same options as WebStatus.
---@class buildbot.status.WaterfallOptions: buildbot.status.WebStatusOptions
---@field name? string Service name (default "WebStatus").
---@field http_port? buildbot.Port
---@field distrib_port? buildbot.Port Not implemented yet.
---@field allowForce? boolean
---@field public_html? string Directory of static files (default "public_html").
---@field site? any Not implemented yet.
---@field numbuilds? integer Builds shown by default (20).
---@field num_events? integer Waterfall events shown by default (200).
---@field num_events_max? integer
---@field auth? any
---@field order_console_by_time? boolean
---@field changecommentlink? table|function {regex, replacement, title}, project -> triple, or a function.
---@field revlink? string|table|function Format with %s, repository -> format, or a function.
---@field projects? table<string, string>|function
---@field repositories? table<string, string>|function
---@field authz? buildbot.util.Authz
---@field logRotateLength? integer Old name of rotateLength.
---@field rotateLength? integer
---@field maxRotatedFiles? integer
---@field change_hook_dialects? table<string, boolean|table>
---@field change_hook_auth? string[] e.g. {"file:changehook.passwd"}
---@field provide_feeds? string[] The feeds served, of "rss", "atom", "json" (all three by default).
---@field jinja_loaders? any Refused: use template_dirs.
---@field template_dirs? string[] Directories whose templates override the built-in pages.

---@param http_port buildbot.Port|buildbot.status.WaterfallOptions
---@param options? buildbot.status.WaterfallOptions
---@return buildbot.StatusTarget
function status.Waterfall(http_port, options) end

---@class buildbot.status.MailNotifierOptions
---@field name? string Service name (default "MailNotifier").
---@field fromaddr string The From address.
---@field sendToInterestedUsers? boolean Mail the change authors and owners (default true).
---@field extraRecipients? string[]
---@field subject? string %(builder)s, %(result)s, %(title)s, %(projectName)s are replaced.
---@field mode? string|string[] change, failing, passing, problem, warnings, exception; or "all"/"warnings".
---@field builders? string[]
---@field categories? string[] Old name of tags.
---@field tags? string[]
---@field addLogs? boolean|string[]
---@field addPatch? boolean Default true.
---@field buildSetSummary? boolean
---@field relayhost? string Default "localhost".
---@field smtpPort? integer Default 25.
---@field useTls? boolean STARTTLS; needs smtpUser and smtpPassword.
---@field useSmtps? boolean Implicit TLS.
---@field smtpUser? string
---@field smtpPassword? string
---@field lookup? string|buildbot.util.Domain|{getAddress: fun(self: any, name: string): string?}
---@field messageFormatter? fun(mode: string, name: string, build: any, results: integer, master_status: any): {body: string, type: "plain"|"html", subject: string?}
---@field extraHeaders? table<buildbot.RenderableValue, buildbot.RenderableValue>
---@field previousBuildGetter? fun(build: any): any
---@field dumpMailsToLog? boolean

---@param options buildbot.status.MailNotifierOptions
---@return buildbot.StatusTarget
function status.MailNotifier(options) end

---@class buildbot.status.IRCOptions
---@field name? string Service name (default "IRC").
---@field host? string
---@field nick? string
---@field channels? (string|{channel: string, password: string?})[]
---@field pm_to_nicks? string[]
---@field port? integer Default 6667.
---@field allowForce? boolean
---@field allowShutdown? boolean
---@field categories? string[] Old name of tags.
---@field tags? string[]
---@field password? string NickServ password, or the SASL PLAIN password when the server offers SASL.
---@field useSASL? boolean Log in with SASL PLAIN or not connect (needs `password`).
---@field notify_events? table<string, boolean|integer>
---@field noticeOnChannel? boolean
---@field showBlameList? boolean Default true.
---@field useRevisions? boolean
---@field useSSL? boolean
---@field lostDelay? number
---@field failedDelay? number
---@field useColors? boolean Default true.

---@param host string|buildbot.status.IRCOptions
---@param nick? string
---@param options? buildbot.status.IRCOptions
---@return buildbot.StatusTarget
function status.IRC(host, nick, options) end

---@class buildbot.status.PBListenerOptions
---@field name? string
---@field port? buildbot.Port
---@field user? string Default "statusClient".
---@field passwd? string Default "clientpw".

---@param port buildbot.Port|buildbot.status.PBListenerOptions
---@param options? buildbot.status.PBListenerOptions
---@return buildbot.StatusTarget
function status.PBListener(port, options) end

---@class buildbot.status.StatusPushOptions
---@field name? string
---@field serverPushCb? fun(self: any)
---@field queue? any
---@field path? string Accepted; the queue is always kept in the master's storage.
---@field filter? boolean Default true.
---@field bufferDelay? number Default 1. Seconds events gather before one call takes them.
---@field retryDelay? number Default 5.
---@field blackList? string[]
---@field whiteList? string[]
---@field maxMemoryItems? integer With maxDiskItems, bounds the events waiting; the oldest beyond are dropped (listed dead).
---@field maxDiskItems? integer

---@param serverPushCb function|buildbot.status.StatusPushOptions
---@param options? buildbot.status.StatusPushOptions
---@return buildbot.StatusTarget
function status.StatusPush(serverPushCb, options) end

---@class buildbot.status.HttpStatusPushOptions
---@field name? string
---@field serverUrl? string
---@field payload? "events"|"build" Default "events" (0.8's packets); "build" posts Buildbot 4's build JSON at start and end.
---@field debug? boolean
---@field maxMemoryItems? integer With maxDiskItems, bounds the events waiting; the oldest beyond are dropped (listed dead).
---@field maxDiskItems? integer
---@field chunkSize? integer Default 200. Events per request at most; one after a failed request.
---@field maxHttpRequestSize? integer Default 2^20.
---@field extra_post_params? table<string, any>
---@field user? string Basic auth.
---@field password? string
---@field headers? table<string, string> Sent with every request.
---@field path? string Accepted; the queue is always kept in the master's storage.
---@field filter? boolean
---@field bufferDelay? number Default 1. Seconds events gather before one request takes them.
---@field retryDelay? number Default 5. Seconds before a failed request is tried again.
---@field blackList? string[]
---@field whiteList? string[]

---@param serverUrl string|buildbot.status.HttpStatusPushOptions
---@param options? buildbot.status.HttpStatusPushOptions
---@return buildbot.StatusTarget
function status.HttpStatusPush(serverUrl, options) end

---One build of the buildset a GerritStatusPush summarizes.
---@class buildbot.status.GerritBuildInfo
---@field name string The builder's name.
---@field result integer
---@field resultText string "succeeded", "failed", ...
---@field text string
---@field url string
---@field number integer
---@field build any The build, as reviewCB receives it.

---@class buildbot.status.GerritStatusPushOptions
---@field name? string
---@field server? string
---@field username? string
---@field reviewCB? fun(builderName: string, build: any, result: integer, master_status: any, arg: any): {message: string?, labels: table<string, integer>?}
---@field startCB? fun(builderName: string, build: any, arg: any): string
---@field port? integer Default 29418.
---@field reviewArg? any
---@field startArg? any
---@field summaryCB? fun(buildInfoList: buildbot.status.GerritBuildInfo[], results: integer, master_status: any, arg: any): {message: string?, labels: table<string, integer>?}
---@field summaryArg? any
---@field identity_file? string
---@field ssh_known_hosts? string The server's host keys, as known_hosts lines.
---@field builders? string[]
---@field notify? string
---@field wantSteps? boolean
---@field wantLogs? boolean

---@param server string|buildbot.status.GerritStatusPushOptions
---@param username? string
---@param options? buildbot.status.GerritStatusPushOptions
---@return buildbot.StatusTarget
function status.GerritStatusPush(server, username, options) end

---@class buildbot.status.GitHubStatusOptions
---@field name? string
---@field token string
---@field repoOwner buildbot.RenderableValue
---@field repoName buildbot.RenderableValue
---@field sha? buildbot.RenderableValue Default Interpolate("%(src::revision)s").
---@field startDescription? buildbot.RenderableValue
---@field endDescription? buildbot.RenderableValue
---@field context? buildbot.RenderableValue Default Interpolate("buildbot/%(prop:buildername)s").
---@field baseURL? string For GitHub Enterprise.

---@param options buildbot.status.GitHubStatusOptions
---@return buildbot.StatusTarget
function status.GitHubStatus(options) end

---Buildbot 4's spelling: without repoOwner and repoName, they come from the URL of the
---build's repository.
---@class buildbot.status.GitHubStatusPushOptions
---@field name? string
---@field token string
---@field repoOwner? buildbot.RenderableValue
---@field repoName? buildbot.RenderableValue
---@field sha? buildbot.RenderableValue
---@field startDescription? buildbot.RenderableValue
---@field endDescription? buildbot.RenderableValue
---@field context? buildbot.RenderableValue
---@field baseURL? string
---@field verbose? boolean Log each request and answer.
---@field debug? boolean Same as verbose.
---@field verify? boolean Only true (the default) is implemented.
---@field generators? any Refused: the push reports every build's start and end.

---@param options buildbot.status.GitHubStatusPushOptions
---@return buildbot.StatusTarget
function status.GitHubStatusPush(options) end

---@class buildbot.status.StashStatusPushOptions
---@field name? string
---@field base_url? string
---@field user? string
---@field password string

---@param base_url string|buildbot.status.StashStatusPushOptions
---@param user? string
---@param password? string
---@return buildbot.StatusTarget
function status.StashStatusPush(base_url, user, password) end

---@class buildbot.util.Authz
---@class buildbot.util.Auth
---@class buildbot.util.Domain

---@class buildbot.util.AuthzOptions
---@field auth? buildbot.util.Auth
---@field useHttpHeader? boolean Trust a fronting server's REMOTE_USER header or basic user name.
---@field httpLoginUrl? string Where the "Login" link goes, with useHttpHeader.
---@field default_action? buildbot.AuthzAction
---@field view? buildbot.AuthzAction Default true.
---@field forceBuild? buildbot.AuthzAction
---@field forceAllBuilds? buildbot.AuthzAction
---@field pingBuilder? buildbot.AuthzAction
---@field gracefulShutdown? buildbot.AuthzAction
---@field pauseSlave? buildbot.AuthzAction
---@field stopBuild? buildbot.AuthzAction
---@field stopAllBuilds? buildbot.AuthzAction
---@field cancelPendingBuild? buildbot.AuthzAction
---@field cancelAllPendingBuilds? buildbot.AuthzAction
---@field stopChange? buildbot.AuthzAction
---@field cleanShutdown? buildbot.AuthzAction
---@field showUsersPage? buildbot.AuthzAction

---@param options buildbot.util.AuthzOptions
---@return buildbot.util.Authz
function util.Authz(options) end

---@class buildbot.util.BasicAuthOptions
---@field users {[1]: string, [2]: string}[]|table<string, string> {user, password} pairs, or user -> password.

---@param users {[1]: string, [2]: string}[]|table<string, string>|buildbot.util.BasicAuthOptions
---@return buildbot.util.Auth
function util.BasicAuth(users) end

---@class buildbot.util.HTPasswdAuthOptions
---@field file string An .htpasswd file (relative to the base directory): crypt, bcrypt, $apr1$, {SHA}, $1$, $5$, $6$.

---@param file string|buildbot.util.HTPasswdAuthOptions
---@return buildbot.util.Auth
function util.HTPasswdAuth(file) end

---@class buildbot.util.HTPasswdAprAuthOptions
---@field file string An .htpasswd file; the same forms as HTPasswdAuth.

---@param file string|buildbot.util.HTPasswdAprAuthOptions
---@return buildbot.util.Auth
function util.HTPasswdAprAuth(file) end

---Refused: this master stores no users (User Objects); use BasicAuth or HTPasswdAuth.
---@class buildbot.util.UsersAuthOptions

---@return buildbot.util.Auth
function util.UsersAuth() end

---@class buildbot.util.DomainOptions
---@field domain string "example.org" maps user "alice" to alice@example.org.

---@param domain string|buildbot.util.DomainOptions
---@return buildbot.util.Domain
function util.Domain(domain) end

---@class buildbot.status.DomainOptions
---@field domain string The same as util.Domain.

---@param domain string|buildbot.status.DomainOptions
---@return buildbot.util.Domain
function status.Domain(domain) end

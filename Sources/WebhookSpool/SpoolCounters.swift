/// Where the spool's processes count what they did, for a status page (a FastCGI server's scoreboard, shared by
/// its processes): the spool knows these two counts, not the page that shows them.
package protocol SpoolCounters: AnyObject, Sendable {
    /// One run of the hook ended with `result`.
    func countHook(_ result: Hook.Result)
    /// The namer ended a pass; `failed` says whether it could not name what waited.
    func namerPass(failed: Bool)
}

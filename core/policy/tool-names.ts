/**
 * The MCP workspace tools' names: a fixed table, so they can be metric labels
 * (core/metrics.ts) without pulling the policy modules into the render worker.
 */
export const TOOL_NAMES = ["read_file", "write_file", "edit_file", "list_dir", "search", "run_command", "git_status", "git_diff"] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

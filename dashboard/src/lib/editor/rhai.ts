/**
 * Rhai syntax highlighting for CodeMirror 6: a small stream tokenizer for
 * keywords, strings (including back-tick templates), numbers, comments and
 * operators. It only colours; the server's compiler is the judge.
 */
import { StreamLanguage, type StreamParser } from '@codemirror/language';

const KEYWORDS = new Set([
	'let', 'const', 'if', 'else', 'switch', 'do', 'while', 'loop', 'until', 'for', 'in',
	'break', 'continue', 'return', 'throw', 'try', 'catch', 'fn', 'private', 'import',
	'export', 'as', 'global', 'this', 'is_shared'
]);
const ATOMS = new Set(['true', 'false']);
const BUILTINS = new Set([
	'print', 'debug', 'type_of', 'is_def_fn', 'is_def_var', 'response', 'request', 'parse_json',
	'to_json', 'len', 'timestamp'
]);

interface RhaiState {
	/** Depth of a block comment the tokenizer is inside (Rhai nests them). */
	commentDepth: number;
	/** The closing quote of a string that spans lines (only back-tick strings do). */
	inString: string | null;
}

function readString(stream: Parameters<StreamParser<RhaiState>['token']>[0], state: RhaiState, quote: string) {
	let escaped = false;
	let next: string | void;
	while ((next = stream.next()) != null) {
		if (next === quote && !escaped) {
			state.inString = null;
			return 'string';
		}
		escaped = !escaped && next === '\\';
	}
	state.inString = quote === '`' ? quote : null;
	return 'string';
}

export const rhaiParser: StreamParser<RhaiState> = {
	name: 'rhai',
	startState: () => ({ commentDepth: 0, inString: null }),
	token(stream, state) {
		if (state.inString) return readString(stream, state, state.inString);
		if (state.commentDepth > 0) {
			while (!stream.eol()) {
				if (stream.match('/*')) state.commentDepth++;
				else if (stream.match('*/')) {
					state.commentDepth--;
					if (state.commentDepth === 0) break;
				} else stream.next();
			}
			return 'comment';
		}
		if (stream.eatSpace()) return null;
		if (stream.match('//')) {
			stream.skipToEnd();
			return 'comment';
		}
		if (stream.match('/*')) {
			state.commentDepth = 1;
			return 'comment';
		}
		const character = stream.peek();
		if (character === '"' || character === '`' || character === "'") {
			stream.next();
			return readString(stream, state, character);
		}
		if (stream.match(/^0x[0-9a-fA-F_]+/) || stream.match(/^0b[01_]+/) || stream.match(/^0o[0-7_]+/)) {
			return 'number';
		}
		if (stream.match(/^\d[\d_]*(\.\d[\d_]*)?([eE][+-]?\d+)?/)) return 'number';
		if (stream.match(/^[A-Za-z_][A-Za-z0-9_]*/)) {
			const word = stream.current();
			if (KEYWORDS.has(word)) return 'keyword';
			if (ATOMS.has(word)) return 'atom';
			if (BUILTINS.has(word)) return 'builtin';
			if (stream.peek() === '(') return 'variableName.function';
			return 'variableName';
		}
		if (stream.match('#{')) return 'bracket';
		if (stream.match(/^[+\-*/%=!<>&|^?.:]+/)) return 'operator';
		stream.next();
		return null;
	},
	languageData: { commentTokens: { line: '//', block: { open: '/*', close: '*/' } } }
};

export const rhai = StreamLanguage.define(rhaiParser);

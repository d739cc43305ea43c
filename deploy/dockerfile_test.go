package deploy_test

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is one FROM and what follows it.
type stage struct {
	image, name string
	instrs      []instruction
}

// parseDockerfile is a minimal Dockerfile reader: comments and blank lines
// dropped, backslash continuations joined, instructions grouped by stage.
func parseDockerfile(t *testing.T, data []byte) []stage {
	t.Helper()
	var stages []stage
	var cur strings.Builder
	start := 0
	lines := strings.Split(string(data), "\n")
	for i, raw := range lines {
		l := strings.TrimSpace(raw)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		cur.WriteString(l)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) != 1 && (len(f) != 3 || !strings.EqualFold(f[1], "AS")) {
				t.Fatalf("Dockerfile:%d: cannot read FROM %s", in.line, in.args)
			}
			st := stage{image: f[0]}
			if len(f) == 3 {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends in a continuation line")
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last returns the arguments of the stage's last cmd instruction.
func (s stage) last(cmd string) string {
	all := s.all(cmd)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1].args
}

func execForm(t *testing.T, cmd, args string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		t.Fatalf("%s %s: want the exec (JSON) form: %v", cmd, args, err)
	}
	return v
}

// runFlag is a RUN option such as --mount=type=cache,target=/go/pkg/mod.
var runFlag = regexp.MustCompile(`^(\s*--[a-z-]+=\S+)+\s*`)

// buildCommand returns the build stage's `go build` shell command.
func buildCommand(t *testing.T, build stage) string {
	t.Helper()
	var cmds []string
	for _, in := range build.all("RUN") {
		if c := runFlag.ReplaceAllString(in.args, ""); strings.Contains(c, "go build") {
			cmds = append(cmds, c)
		}
	}
	if len(cmds) != 1 {
		t.Fatalf("the build stage has %d RUN go build instructions, want 1", len(cmds))
	}
	return cmds[0]
}

const (
	versionVar = "github.com/extauthz/extauthz/internal/cli.Version"
	binaryPath = "/out/extauthz"
)

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, readFile(t, filepath.Join(root, "Dockerfile")))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.image, "golang:1.26") || build.name == "" {
		t.Errorf("build stage FROM %s AS %q, want golang:1.26 AS <name>", build.image, build.name)
	}
	if final.image != "scratch" && !(strings.HasPrefix(final.image, "gcr.io/distroless/static") && strings.HasSuffix(final.image, ":nonroot")) {
		t.Errorf("final stage FROM %s, want distroless static (nonroot) or scratch", final.image)
	}

	// The build: static, trimmed, stamped.
	cmd := buildCommand(t, build)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X ` + versionVar + `=${VERSION}"`, "-o " + binaryPath + " ", "./cmd/extauthz"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("go build command %q lacks %q", cmd, want)
		}
	}
	if !slices.ContainsFunc(build.all("ARG"), func(in instruction) bool { return strings.HasPrefix(in.args, "VERSION") }) {
		t.Error("the build stage must declare ARG VERSION")
	}

	// The image: our binary only, as a non-root numeric user.
	if got := final.last("COPY"); got != "--from="+build.name+" "+binaryPath+" /extauthz" {
		t.Errorf("final COPY %q, want the binary from the build stage", got)
	}
	user := final.last("USER")
	uid, gid, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric, non-root uid (Kubernetes runAsNonRoot cannot check a name)", user)
	}
	if gid != "" {
		if n, err := strconv.Atoi(gid); err != nil || n == 0 {
			t.Errorf("USER %q: want a numeric, non-root gid", user)
		}
	}
	if got := execForm(t, "ENTRYPOINT", final.last("ENTRYPOINT")); !slices.Equal(got, []string{"/extauthz"}) {
		t.Errorf("ENTRYPOINT %v", got)
	}
	if got := execForm(t, "CMD", final.last("CMD")); !slices.Equal(got, []string{"serve", "--config", "/etc/extauthz/config.yaml"}) {
		t.Errorf("CMD %v", got)
	}
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.args)...)
	}
	if !slices.Contains(exposed, "9001") || !slices.Contains(exposed, "9090") {
		t.Errorf("EXPOSE %v, want 9001 (gRPC) and 9090 (metrics, health)", exposed)
	}
}

// TestDockerBuild runs the Dockerfile's `go build` command as it stands and
// checks the binary: static (no interpreter, no dynamic section), stripped,
// no build paths, and `version` prints the stamped version.
func TestDockerBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("checks a Linux ELF binary")
	}
	stages := parseDockerfile(t, readFile(t, filepath.Join(root, "Dockerfile")))
	cmd := buildCommand(t, stages[0])
	out := filepath.Join(t.TempDir(), "extauthz")
	cmd = strings.Replace(cmd, binaryPath, out, 1)

	const version = "v9.8.7-test"
	sh := exec.Command("sh", "-c", cmd)
	sh.Dir = root
	// As in the image build: the target platform's build args; no VCS
	// stamping (.dockerignore leaves .git out of the context).
	sh.Env = append(os.Environ(), "VERSION="+version, "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH, "GOFLAGS=-buildvcs=false")
	if b, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: not static", p.Type)
		}
	}
	if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
		t.Error("the binary has a .dynamic or .interp section: not static")
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil || f.Section(".debug_info") != nil {
		t.Error("the binary keeps its symbol table or DWARF: -ldflags -s -w did not apply")
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if dir := abs(t, root); bytes.Contains(bin, []byte(dir+"/")) {
		t.Errorf("the binary contains the build path %s: -trimpath did not apply", dir)
	}

	got, err := exec.Command(out, "version").Output()
	if err != nil {
		t.Fatalf("extauthz version: %v", err)
	}
	if string(got) != "extauthz "+version+"\n" {
		t.Errorf("extauthz version printed %q, want %q", got, "extauthz "+version)
	}
}

// ignorePattern is one .dockerignore line, compiled the way Docker reads it:
// relative to the context root, * and ? within a path element, ** across
// elements, a leading ! re-including.
type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
	text   string
}

func readDockerignore(t *testing.T) []ignorePattern {
	t.Helper()
	var out []ignorePattern
	for _, l := range strings.Split(string(readFile(t, filepath.Join(root, ".dockerignore"))), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p := ignorePattern{text: l}
		if strings.HasPrefix(l, "!") {
			p.negate, l = true, strings.TrimSpace(l[1:])
		}
		l = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(l)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(l); i++ {
			switch c := l[i]; {
			case c == '*' && i+1 < len(l) && l[i+1] == '*':
				i++
				if i+1 < len(l) && l[i+1] == '/' {
					i++
					re.WriteString("(.*/)?")
				} else {
					re.WriteString(".*")
				}
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			case c == '[' || c == '\\':
				t.Fatalf(".dockerignore %q: character classes and escapes are not understood by this test", p.text)
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		p.re = regexp.MustCompile(re.String())
		out = append(out, p)
	}
	return out
}

// ignored reports whether Docker leaves path (slash-separated, relative to
// the context) out: the last pattern matching it or one of its parent
// folders decides.
func ignored(patterns []ignorePattern, path string) bool {
	out := false
	for _, p := range patterns {
		for q := path; q != "." && q != "/" && q != ""; q = filepath.ToSlash(filepath.Dir(q)) {
			if p.re.MatchString(q) {
				out = !p.negate
				break
			}
		}
	}
	return out
}

// TestDockerignore checks that the build context keeps every file
// ./cmd/extauthz is built from (Go files and embedded files of this
// module's packages, go.mod, go.sum) and leaves out VCS data and local
// state.
func TestDockerignore(t *testing.T) {
	patterns := readDockerignore(t)
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, "./cmd/extauthz")
	list.Dir = root
	list.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	b, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dir := abs(t, root)
	needed := []string{"go.mod", "go.sum"}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		rel, err := filepath.Rel(dir, f[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range f[1:] {
			needed = append(needed, filepath.ToSlash(filepath.Join(rel, name)))
		}
	}
	if len(needed) < 10 || !slices.ContainsFunc(needed, func(s string) bool { return strings.HasSuffix(s, ".sql") }) {
		t.Fatalf("go list found too little (%d files, embedded migrations?): %v", len(needed), needed)
	}
	for _, n := range needed {
		if ignored(patterns, n) {
			t.Errorf(".dockerignore leaves out %s, which the image build needs", n)
		}
	}
	for _, n := range []string{".git/config", ".extauthz-dev/config.yaml", "jwtauth.test", "store/postgres/postgres.test", "bin/extauthz", "extauthz"} {
		if !ignored(patterns, n) {
			t.Errorf(".dockerignore lets %s into the build context", n)
		}
	}
	if ignored(patterns, "cmd/extauthz/main.go") {
		t.Error("the root-level pattern \"extauthz\" must not match cmd/extauthz")
	}
}

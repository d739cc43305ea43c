package deploy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	stdflag "flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/strvals"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/extauthz/extauthz/tokencrypt"
)

var updateChartRules = stdflag.Bool("update-chart-rules", false, "copy prometheus/extauthz-rules.yaml into the Helm chart's files/")

const (
	chartDir       = "helm/extauthz"
	chartRules     = "helm/extauthz/files/extauthz-rules.yaml"
	chartRelease   = "extauthz"
	chartNamespace = "extauthz"
	// chartKubeVersion is the cluster version the chart is rendered and
	// linted for (it needs 1.30: the preStop sleep action).
	chartKubeVersion = "v1.33.0"
)

// chartValues reads a values file of the chart; "" is the chart's defaults.
func chartValues(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	v, err := common.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// renderChart renders the chart as `helm template` does: an install in
// client-only dry-run mode.
func renderChart(t *testing.T, vals map[string]any) (*releasev1.Release, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := common.ParseKubeVersion(chartKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler)))
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = chartRelease
	inst.Namespace = chartNamespace
	inst.Replace = true
	inst.KubeVersion = kv
	r, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*releasev1.Release)
	if !ok {
		t.Fatalf("install returned %T", r)
	}
	return rel, nil
}

// chartObjects is a rendered release, decoded: every object, regular and
// hook, in objects; the hooks apart.
type chartObjects struct {
	objects *manifests
	all     []metav1.Object // every Kubernetes object but the Istio ones
	regular map[string]bool // kind/name of the regular objects
	hooks   []*releasev1.Hook
}

func decodeRelease(t *testing.T, rel *releasev1.Release) *chartObjects {
	t.Helper()
	co := &chartObjects{objects: &manifests{}, regular: map[string]bool{}, hooks: rel.Hooks}
	decode := func(where, manifest string, regular bool) {
		for _, doc := range splitDocuments(t, where, []byte(manifest)) {
			var tm metav1.TypeMeta
			var om struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if err := yaml.Unmarshal(doc, &om); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if regular {
				co.regular[tm.Kind+"/"+om.Metadata.Name] = true
			}
			if obj := co.objects.add(t, where, tm, doc); obj != nil {
				co.all = append(co.all, obj)
			}
		}
	}
	decode("manifest", rel.Manifest, true)
	for _, h := range rel.Hooks {
		decode(h.Path, h.Manifest, false)
	}
	listed := slices.Sorted(maps.Keys(co.regular))
	for _, h := range rel.Hooks {
		listed = append(listed, fmt.Sprintf("%s/%s (hook %v, weight %d)", h.Kind, h.Name, h.Events, h.Weight))
	}
	t.Logf("rendered: %s", strings.Join(listed, ", "))
	return co
}

// meshSnippet is the mesh-config snippet of the release notes.
func meshSnippet(t *testing.T, notes string) *meshv1alpha1.MeshConfig {
	t.Helper()
	_, rest, ok := strings.Cut(notes, "# mesh-config begin\n")
	block, _, ok2 := strings.Cut(rest, "# mesh-config end")
	if !ok || !ok2 {
		return nil
	}
	var doc struct {
		MeshConfig map[string]any `json:"meshConfig"`
	}
	if err := yaml.UnmarshalStrict([]byte(block), &doc); err != nil {
		t.Fatalf("NOTES mesh-config: %v", err)
	}
	js, err := yaml.Marshal(doc.MeshConfig)
	if err != nil {
		t.Fatal(err)
	}
	if js, err = yaml.YAMLToJSON(js); err != nil {
		t.Fatal(err)
	}
	var mc meshv1alpha1.MeshConfig
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &mc); err != nil {
		t.Fatalf("NOTES mesh-config is not an Istio MeshConfig: %v", err)
	}
	return &mc
}

// placeholderSecrets gives every Secret a pod refers to a placeholder value
// marked REPLACE_ME (URLs for *url keys), as the example Secret does: the
// chart never creates a Secret, the cluster has them.
func placeholderSecrets(m *manifests, pods ...corev1.PodSpec) {
	byName := map[string]*corev1.Secret{}
	for _, pod := range pods {
		for _, c := range pod.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				s := byName[ref.Name]
				if s == nil {
					s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}, StringData: map[string]string{}}
					byName[ref.Name] = s
					m.secrets = append(m.secrets, s)
				}
				v := "REPLACE_ME-" + ref.Key
				if strings.HasSuffix(ref.Key, "url") {
					v = "postgres://extauthz:REPLACE_ME@db.example.com:5432/extauthz?sslmode=verify-full"
				}
				s.StringData[ref.Key] = v
			}
		}
	}
}

// materializeSecretFiles points the configuration's paths under the pod's
// mounted Secrets at files in a temporary directory, each holding a fresh
// key (a PEM private key for *.pem, an encryption key otherwise), so that
// the configuration can be parsed here.
func materializeSecretFiles(t *testing.T, cm *corev1.ConfigMap, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	data := cm.Data["config.yaml"]
	for _, vm := range c.VolumeMounts {
		if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name && v.Secret != nil }) {
			continue
		}
		dir := t.TempDir()
		for _, p := range regexp.MustCompile(regexp.QuoteMeta(vm.MountPath)+`/[^\s"']+`).FindAllString(data, -1) {
			local := filepath.Join(dir, strings.TrimPrefix(p, vm.MountPath))
			if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
				t.Fatal(err)
			}
			content := []byte(tokencrypt.GenerateKey())
			if strings.HasSuffix(local, ".pem") {
				content = pemKey(t)
			}
			if err := os.WriteFile(local, content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		data = strings.ReplaceAll(data, vm.MountPath+"/", dir+"/")
	}
	cm.Data["config.yaml"] = data
}

// pemKey is a fresh P-256 private key in PKCS #8 PEM.
func pemKey(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestHelmChart renders the chart with its defaults and with every option
// on (ci/full-values.yaml), lints it, decodes every object with its API type
// (unknown fields refused), and checks it as TestKubernetes checks the raw
// manifests, plus the chart's own promises: secrets only by reference, the
// migration as a hook that runs before the new pods, the optional objects.
func TestHelmChart(t *testing.T) {
	tests := []struct {
		name, valuesFile string
	}{
		{"defaults", ""},
		{"full", filepath.Join(chartDir, "ci", "full-values.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := chartValues(t, tt.valuesFile)
			lintChart(t, vals)
			rel, err := renderChart(t, vals)
			if err != nil {
				t.Fatal(err)
			}
			merged := chartValues(t, filepath.Join(chartDir, "values.yaml"))
			merged = chartutil.MergeTables(vals, merged)
			checkChart(t, rel, merged)
		})
	}
}

func lintChart(t *testing.T, vals map[string]any) {
	t.Helper()
	kv, err := common.ParseKubeVersion(chartKubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	l := action.NewLint()
	l.Strict = true
	l.Namespace = chartNamespace
	l.KubeVersion = kv
	res := l.Run([]string{chartDir}, vals)
	for _, err := range res.Errors {
		t.Errorf("helm lint: %v", err)
	}
}

// value returns the value at a dotted path of the (merged) values.
func value(vals map[string]any, path string) any {
	var v any = vals
	for k := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func intValue(t *testing.T, vals map[string]any, path string) int {
	t.Helper()
	switch v := value(vals, path).(type) {
	case float64:
		return int(v)
	case int:
		return v
	case int64:
		return int(v)
	}
	t.Fatalf("values %s = %v, want a number", path, value(vals, path))
	return 0
}

func checkChart(t *testing.T, rel *releasev1.Release, vals map[string]any) {
	co := decodeRelease(t, rel)
	m := co.objects
	if len(m.secrets) > 0 {
		t.Error("the chart renders a Secret: secrets must come from existing Secrets, by reference")
	}
	apNamespace, _ := value(vals, "istio.authorizationPolicy.namespace").(string)
	for _, o := range co.all {
		if o.GetNamespace() != chartNamespace {
			t.Errorf("%s is in namespace %q, want the release's %q", o.GetName(), o.GetNamespace(), chartNamespace)
		}
	}

	dep := one(t, "Deployments", m.deployments)
	job := one(t, "Jobs", m.jobs)
	placeholderSecrets(m, dep.Spec.Template.Spec, job.Spec.Template.Spec)
	cm := one(t, "ConfigMaps", m.configMaps)
	for k, v := range cm.Data {
		if strings.Contains(v, "REPLACE_ME") {
			t.Errorf("ConfigMap %s key %s holds a secret's value", cm.Name, k)
		}
	}
	materializeSecretFiles(t, cm, dep.Spec.Template.Spec, container(t, dep.Spec.Template.Spec, "extauthz"))
	w := checkWorkload(t, m)
	pod := w.dep.Spec.Template.Spec

	// Shutdown: the configuration, the preStop sleep and the grace period
	// follow the values.
	sleep := intValue(t, vals, "shutdown.preStopSleepSeconds")
	drain, timeout := w.cfg.Shutdown.DrainDelay.D(), w.cfg.Shutdown.Timeout.D()
	if drain != time.Duration(intValue(t, vals, "shutdown.drainDelaySeconds"))*time.Second ||
		timeout != time.Duration(intValue(t, vals, "shutdown.timeoutSeconds"))*time.Second {
		t.Errorf("shutdown.drain_delay %v and timeout %v do not follow the values", drain, timeout)
	}
	var gotSleep int64
	if l := w.c.Lifecycle; l != nil && l.PreStop != nil {
		if l.PreStop.Sleep == nil {
			t.Error("the preStop hook must be a sleep action (the image has no shell)")
		} else {
			gotSleep = l.PreStop.Sleep.Seconds
		}
	}
	if gotSleep != int64(sleep) {
		t.Errorf("preStop sleeps %ds, want shutdown.preStopSleepSeconds (%d)", gotSleep, sleep)
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if need := time.Duration(sleep)*time.Second + drain + timeout + 5*time.Second; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v must cover the preStop sleep, drain_delay and timeout and a margin (%v)", grace, need)
	}
	if w.dep.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("the pods carry no checksum of the configuration: a changed ConfigMap would not roll them")
	}

	// The migration: a pre-install,pre-upgrade hook, which Helm runs and
	// waits for before it creates or updates the Deployment, using nothing
	// the release itself creates (hooks run before the regular objects).
	var jobHook *releasev1.Hook
	for _, h := range co.hooks {
		if h.Kind == "Job" && h.Name == job.Name {
			jobHook = h
		}
	}
	switch {
	case co.regular["Job/"+job.Name]:
		t.Error("the migration Job is a regular object: a new image's pods would start before the migration")
	case jobHook == nil:
		t.Fatal("the migration Job is no hook")
	}
	for _, e := range []releasev1.HookEvent{releasev1.HookPreInstall, releasev1.HookPreUpgrade} {
		if !slices.Contains(jobHook.Events, e) {
			t.Errorf("the migration hook does not run on %s", e)
		}
	}
	if !slices.Contains(jobHook.DeletePolicies, releasev1.HookBeforeHookCreation) {
		t.Error("the migration hook needs delete policy before-hook-creation: the next upgrade's Job cannot be created over the last one")
	}
	for _, h := range co.hooks {
		if h != jobHook && h.Weight <= jobHook.Weight && slices.ContainsFunc(h.Events, func(e releasev1.HookEvent) bool { return slices.Contains(jobHook.Events, e) }) {
			t.Errorf("hook %s %s runs before the migration", h.Kind, h.Name)
		}
	}
	jpod := job.Spec.Template.Spec
	if sa := jpod.ServiceAccountName; sa != "" && co.regular["ServiceAccount/"+sa] {
		t.Errorf("the migration hook runs as ServiceAccount %s, which the release creates after its pre-install hooks", sa)
	}
	for _, v := range jpod.Volumes {
		if v.ConfigMap != nil && co.regular["ConfigMap/"+v.ConfigMap.Name] {
			t.Errorf("the migration hook mounts ConfigMap %s, which the release creates after its pre-install hooks", v.ConfigMap.Name)
		}
	}
	for _, c := range jpod.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && co.regular["ConfigMap/"+e.ValueFrom.ConfigMapKeyRef.Name] {
				t.Errorf("the migration hook reads ConfigMap %s, which the release creates after its pre-install hooks", e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	}

	// Only the gateways of the values reach the gRPC port.
	want := map[netPeer]bool{}
	gateways, _ := value(vals, "networkPolicy.gateways").([]any)
	for _, g := range gateways {
		g := g.(map[string]any)
		nl, _ := g["namespaceLabels"].(map[string]any)
		ns, _ := nl["kubernetes.io/metadata.name"].(string)
		pl := labels.Set{}
		for k, v := range g["podLabels"].(map[string]any) {
			pl[k] = fmt.Sprint(v)
		}
		want[netPeer{ns, pl.String()}] = true
	}
	checkNetworkPolicy(t, m, want, w.svc, w.c)

	// The optional objects.
	podLabels := labels.Set(w.dep.Spec.Template.Labels)
	optional := []struct {
		value string
		count int
	}{
		{"autoscaling.enabled", len(m.hpas)},
		{"serviceMonitor.enabled", len(m.serviceMonitors)},
		{"prometheusRule.enabled", len(m.prometheusRules)},
		{"istio.authorizationPolicy.enabled", len(m.authzPolicies)},
	}
	for _, o := range optional {
		if on, _ := value(vals, o.value).(bool); (o.count == 1) != on || o.count > 1 {
			t.Errorf("%s = %v, but %d objects rendered", o.value, on, o.count)
		}
	}
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != w.dep.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("the HorizontalPodAutoscaler scales %s %s, not the Deployment", ref.Kind, ref.Name)
		}
		if len(h.Spec.Metrics) == 0 {
			t.Error("the HorizontalPodAutoscaler has no metric")
		}
	}
	for _, sm := range m.serviceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.svc.Labels)) {
			t.Error("the ServiceMonitor does not select the Service")
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("the ServiceMonitor must scrape /metrics on the Service's metrics port: %+v", sm.Spec.Endpoints)
		}
	}
	for _, pr := range m.prometheusRules {
		checkChartRules(t, pr.Spec.Groups)
	}
	mesh := meshSnippet(t, rel.Info.Notes)
	if on, _ := value(vals, "istio.enabled").(bool); on != (mesh != nil) {
		t.Errorf("istio.enabled = %v, but the notes' mesh-config snippet is there: %v", on, mesh != nil)
	}
	if mesh != nil {
		m.mesh = append(m.mesh, mesh)
		if len(m.authzPolicies) > 0 {
			custom := checkMesh(t, m, mesh, w)
			if apNamespace != "" && custom.Namespace != apNamespace {
				t.Errorf("the CUSTOM policy is in namespace %q, want %q", custom.Namespace, apNamespace)
			}
			if labels.SelectorFromSet(custom.Spec.GetSelector().GetMatchLabels()).Matches(podLabels) {
				t.Error("the CUSTOM policy selects extauthz itself")
			}
		}
		if a := mesh.GetDefaultConfig().GetConnectionSettings().GetHttpHeadersWithUnderscoresAction(); a != meshv1alpha1.ProxyConfig_ConnectionSettings_HEADERS_WITH_UNDERSCORES_REJECT_REQUEST {
			t.Errorf("the mesh-config snippet's httpHeadersWithUnderscoresAction = %v, want HEADERS_WITH_UNDERSCORES_REJECT_REQUEST", a)
		}
	}
}

// checkChartRules: the PrometheusRule carries exactly the rules of
// prometheus/extauthz-rules.yaml, as Prometheus parses them.
func checkChartRules(t *testing.T, groups []monitoringv1.RuleGroup) {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	got, errs := rulefmt.Parse(b, false, model.UTF8Validation, promParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Fatalf("PrometheusRule: %v", err)
	}
	want := loadRules(t)
	if len(got.Groups) != len(want.Groups) {
		t.Fatalf("the PrometheusRule has %d groups, %s %d", len(got.Groups), rulesFile, len(want.Groups))
	}
	for i, g := range got.Groups {
		w := want.Groups[i]
		if len(g.Rules) != len(w.Rules) || g.Name != w.Name {
			t.Errorf("the PrometheusRule's group %d is %s with %d rules, %s has %s with %d", i, g.Name, len(g.Rules), rulesFile, w.Name, len(w.Rules))
			continue
		}
		for j, r := range g.Rules {
			if !reflect.DeepEqual(r, w.Rules[j]) {
				t.Errorf("the PrometheusRule's %s differs from %s's", r.Record+r.Alert, rulesFile)
			}
		}
		if g.Rules, w.Rules = nil, nil; !reflect.DeepEqual(g, w) {
			t.Errorf("the PrometheusRule's group %s (interval, labels ...) differs from %s's", g.Name, rulesFile)
		}
	}
}

// TestHelmChartRefuses: values that would put a secret into the ConfigMap,
// refer to a variable nothing sets, or open the gRPC port to a whole
// namespace do not render; the error names the value, never a secret.
func TestHelmChartRefuses(t *testing.T) {
	const secret = "hunter2-not-a-reference"
	tests := []struct {
		name, set, want string
	}{
		{"client secret inline", "config.providers.github.client_secret=" + secret, "config.providers.github.client_secret must be a ${VAR} reference"},
		{"database URL inline", "config.database.url=postgres://u:" + secret + "@db/extauthz", "config.database.url must be a ${VAR} reference"},
		{"encryption key inline", "config.encryption.keys[0].key=" + secret, "config.encryption.keys[0].key must be a ${VAR} reference"},
		{"connect secret inline", "config.connect.login.client_secret=" + secret, "config.connect.login.client_secret must be a ${VAR} reference"},
		{"variable nobody sets", "config.providers.github.client_secret=${NOT_SET}", "${NOT_SET}, which neither secretEnv nor extraEnv sets"},
		{"secret reference without key", "secretEnv.GITHUB_CLIENT_SECRET.key=null,secretEnv.GITHUB_CLIENT_SECRET.name=x", "secretEnv.GITHUB_CLIENT_SECRET must be {key: KEY}"},
		{"migration URL not a reference", "migration.databaseURL=" + secret, "migration.databaseURL must be {key: KEY}"},
		{"gateway without pod labels", "networkPolicy.gateways[0].podLabels=null", "networkPolicy.gateways[0].podLabels is required"},
		{"shutdown in config", "config.shutdown.drain_delay=1s", "config.shutdown: set shutdown.drainDelaySeconds"},
		{"listen port in config", "config.listen.grpc=:9000", "config.listen.grpc and config.listen.metrics: set ports"},
		{"one replica autoscaled", "autoscaling.enabled=true,autoscaling.minReplicas=1", "autoscaling.minReplicas must be at least 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals := map[string]any{}
			if err := strvals.ParseInto(tt.set, vals); err != nil {
				t.Fatal(err)
			}
			_, err := renderChart(t, vals)
			switch {
			case err == nil:
				t.Fatalf("rendered with %s", strings.SplitN(tt.set, "=", 2)[0])
			case strings.Contains(err.Error(), secret):
				t.Error("the error repeats the secret")
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("error %q does not say %q", err.Error(), tt.want)
			}
		})
	}
}

// TestHelmChartRules: the chart's copy of the Prometheus rules is
// prometheus/extauthz-rules.yaml. With -update-chart-rules it rewrites the
// copy instead.
func TestHelmChartRules(t *testing.T) {
	want := readFile(t, rulesFile)
	got, err := os.ReadFile(chartRules)
	if err != nil && !(*updateChartRules && os.IsNotExist(err)) {
		t.Fatal(err)
	}
	if bytes.Equal(got, want) {
		return
	}
	if *updateChartRules {
		if err := os.WriteFile(chartRules, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: rewritten", chartRules)
		return
	}
	t.Errorf("%s differs from %s; copy it with\n"+
		"  (cd deploy && go test . -run TestHelmChartRules -update-chart-rules)\n"+
		"from the repository root, and review the change.", chartRules, rulesFile)
}

// wholeValues are the maps of values.yaml that README.md lists as one row:
// free-form maps and Kubernetes structures passed through.
var wholeValues = map[string]bool{
	"config": true, "secretEnv": true, "podSecurityContext": true, "securityContext": true, "resources": true,
	"readinessProbe": true, "livenessProbe": true, "migration.databaseURL": true, "migration.resources": true,
	"networkPolicy.metricsNamespaceLabels": true,
}

// TestHelmChartReadme: the README's values table lists every value of
// values.yaml (its leaves, and wholeValues), and no other.
func TestHelmChartReadme(t *testing.T) {
	vals := chartValues(t, filepath.Join(chartDir, "values.yaml"))
	want := map[string]bool{}
	var walk func(prefix string, v map[string]any)
	walk = func(prefix string, v map[string]any) {
		for k, sub := range v {
			path := prefix + k
			if m, ok := sub.(map[string]any); ok && len(m) > 0 && !wholeValues[path] {
				walk(path+".", m)
				continue
			}
			want[path] = true
		}
	}
	walk("", vals)
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	got := map[string]bool{}
	for line := range strings.Lines(string(readFile(t, filepath.Join(chartDir, "README.md")))) {
		if m := row.FindStringSubmatch(line); m != nil {
			got[m[1]] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !got[k] {
			t.Errorf("README.md's values table has no row for %s", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if !want[k] {
			t.Errorf("README.md's values table lists %s, which values.yaml does not have", k)
		}
	}
}

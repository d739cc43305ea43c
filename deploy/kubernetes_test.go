package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	istionetworkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecurityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/extauthz/extauthz/config"
	"github.com/extauthz/extauthz/tokencrypt"
)

// manifests is every object in deploy/kubernetes/ and envoy/istio/ (or
// rendered by the Helm chart), decoded into its API type.
type manifests struct {
	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	services        []*corev1.Service
	deployments     []*appsv1.Deployment
	pdbs            []*policyv1.PodDisruptionBudget
	jobs            []*batchv1.Job
	networkPolicies []*networkingv1.NetworkPolicy
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	serviceMonitors []*monitoringv1.ServiceMonitor
	prometheusRules []*monitoringv1.PrometheusRule
	authzPolicies   []*istiosecurityv1.AuthorizationPolicy
	peerAuths       []*istiosecurityv1.PeerAuthentication
	envoyFilters    []*istionetworkingv1alpha3.EnvoyFilter
	mesh            []*meshv1alpha1.MeshConfig
	namespaced      []metav1.Object // what deploy/kubernetes/ puts in its namespace
}

// documents splits a multi-document YAML file, dropping empty documents.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	return splitDocuments(t, path, readFile(t, path))
}

// splitDocuments splits multi-document YAML, dropping empty documents.
func splitDocuments(t *testing.T, path string, data []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if v != nil {
			docs = append(docs, doc)
		}
	}
}

// strict decodes a Kubernetes object: unknown fields and duplicate keys
// are errors.
func strict(t *testing.T, where string, doc []byte, obj any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// strictSpec decodes an Istio object's spec with protojson, unknown fields
// rejected: the istio.io/api types' own UnmarshalJSON (used by
// istio.io/client-go) allows unknown fields, which would let a misspelt
// field through.
func strictSpec(t *testing.T, where string, doc []byte, spec proto.Message) {
	t.Helper()
	var obj struct {
		Spec json.RawMessage `json:"spec"`
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := json.Unmarshal(js, &obj); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(obj.Spec, spec); err != nil {
		t.Fatalf("%s: spec: %v", where, err)
	}
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	var files []string
	for _, dir := range []string{"deploy/kubernetes", "envoy/istio"} {
		for _, ext := range []string{"*.yaml", "*.yml"} {
			f, err := filepath.Glob(filepath.Join(root, dir, ext))
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f...)
		}
	}
	m := &manifests{}
	for _, file := range files {
		kube := strings.Contains(filepath.ToSlash(file), "deploy/kubernetes/")
		for i, doc := range documents(t, file) {
			where := filepath.ToSlash(file)
			if i > 0 {
				where += "#" + strconv.Itoa(i)
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if tm.APIVersion == "" && tm.Kind == "" && filepath.Base(file) == "mesh-config.yaml" {
				// A MeshConfig fragment, not a Kubernetes object.
				js, err := yaml.YAMLToJSONStrict(doc)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				var mc meshv1alpha1.MeshConfig
				if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &mc); err != nil {
					t.Fatalf("%s: not an Istio MeshConfig: %v", where, err)
				}
				m.mesh = append(m.mesh, &mc)
				continue
			}
			obj := m.add(t, where, tm, doc)
			if obj != nil && kube {
				m.namespaced = append(m.namespaced, obj)
			}
		}
	}
	return m
}

// add decodes one object of a known kind into its API type (unknown fields
// refused) and files it; it returns the object unless it is a Namespace or
// an Istio object.
func (m *manifests) add(t *testing.T, where string, tm metav1.TypeMeta, doc []byte) metav1.Object {
	t.Helper()
	var obj metav1.Object
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		file(t, where, doc, &m.namespaces)
		return nil
	case "v1 ServiceAccount":
		obj = file(t, where, doc, &m.serviceAccounts)
	case "v1 ConfigMap":
		obj = file(t, where, doc, &m.configMaps)
	case "v1 Secret":
		obj = file(t, where, doc, &m.secrets)
	case "v1 Service":
		obj = file(t, where, doc, &m.services)
	case "apps/v1 Deployment":
		obj = file(t, where, doc, &m.deployments)
	case "policy/v1 PodDisruptionBudget":
		obj = file(t, where, doc, &m.pdbs)
	case "batch/v1 Job":
		obj = file(t, where, doc, &m.jobs)
	case "networking.k8s.io/v1 NetworkPolicy":
		obj = file(t, where, doc, &m.networkPolicies)
	case "networking.istio.io/v1alpha3 EnvoyFilter":
		file(t, where, doc, &m.envoyFilters)
		var spec networkingv1alpha3.EnvoyFilter
		strictSpec(t, where, doc, &spec)
	case "security.istio.io/v1 AuthorizationPolicy":
		file(t, where, doc, &m.authzPolicies)
		var spec securityv1beta1.AuthorizationPolicy
		strictSpec(t, where, doc, &spec)
	case "security.istio.io/v1 PeerAuthentication":
		file(t, where, doc, &m.peerAuths)
		var spec securityv1beta1.PeerAuthentication
		strictSpec(t, where, doc, &spec)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj = file(t, where, doc, &m.hpas)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		obj = file(t, where, doc, &m.serviceMonitors)
	case "monitoring.coreos.com/v1 PrometheusRule":
		obj = file(t, where, doc, &m.prometheusRules)
	default:
		t.Fatalf("%s: %s %s: no API type known to this test", where, tm.APIVersion, tm.Kind)
	}
	return obj
}

// file decodes doc into a new object of its API type (unknown fields
// refused), appends it to list and returns it.
func file[T any, P interface {
	*T
	metav1.Object
}](t *testing.T, where string, doc []byte, list *[]P) metav1.Object {
	t.Helper()
	o := P(new(T))
	strict(t, where, doc, o)
	*list = append(*list, o)
	return o
}

func one[T any](t *testing.T, what string, items []T) T {
	t.Helper()
	if len(items) != 1 {
		t.Fatalf("%d %s, want 1", len(items), what)
	}
	return items[0]
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func containerPort(t *testing.T, c corev1.Container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

// secretValue resolves a container's env var from the manifests' Secret.
func secretValue(t *testing.T, m *manifests, c corev1.Container, env string) (key, value string) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name != env {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if ref == nil || e.Value != "" {
			t.Fatalf("container %s: %s must come from a Secret (secretKeyRef)", c.Name, env)
		}
		for _, s := range m.secrets {
			if s.Name == ref.Name {
				if v, ok := s.StringData[ref.Key]; ok {
					return ref.Key, v
				}
				if v, ok := s.Data[ref.Key]; ok {
					return ref.Key, string(v)
				}
			}
		}
		t.Fatalf("container %s: %s refers to Secret %s key %s, which the example Secret does not have", c.Name, env, ref.Name, ref.Key)
	}
	t.Fatalf("container %s has no env %s", c.Name, env)
	return "", ""
}

// containerEnv is the environment extauthz sees in a container, with the
// example Secret's placeholders where they are referenced, and a generated
// key in place of an encryption key placeholder (which, by design, does not
// parse).
func containerEnv(t *testing.T, m *manifests, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			key, v := secretValue(t, m, c, e.Name)
			if strings.HasPrefix(key, "encryption-key") {
				if _, err := tokencrypt.ParseKey(v); err == nil {
					t.Errorf("Secret key %s holds a usable key: the example must not ship one", key)
				}
				v = tokencrypt.GenerateKey()
			}
			env[e.Name] = v
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		}
	}
	return env
}

// configPath returns the --config argument and checks that the ConfigMap
// is mounted there.
func configPath(t *testing.T, pod corev1.PodSpec, c corev1.Container, cm *corev1.ConfigMap) string {
	t.Helper()
	path := flag(c.Args, "--config")
	dir, file := filepath.Dir(path), filepath.Base(path)
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("%s must be mounted read-only", dir)
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				if len(v.ConfigMap.Items) == 0 || slices.ContainsFunc(v.ConfigMap.Items, func(k corev1.KeyToPath) bool { return k.Path == file && k.Key == "config.yaml" }) {
					return path
				}
			}
		}
	}
	t.Fatalf("--config %s is not ConfigMap %s's config.yaml", path, cm.Name)
	return ""
}

func checkHardened(t *testing.T, what string, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatalf("%s: pod and container security contexts are required", what)
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: the pod must run as a non-root user", what)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem must be true", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", what)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: capabilities must drop ALL", what)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: extauthz needs no Kubernetes API token (automountServiceAccountToken: false)", what)
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Errorf("%s: no CPU request", what)
	}
	if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory request", what)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory limit", what)
	}
	if tag := c.Image[strings.LastIndex(c.Image, "/")+1:]; !strings.Contains(tag, ":") && !strings.Contains(c.Image, "@sha256:") || strings.HasSuffix(tag, ":latest") {
		t.Errorf("%s: image %q is not pinned", what, c.Image)
	}
}

func TestKubernetes(t *testing.T) {
	m := loadManifests(t)
	ns := one(t, "Namespaces", m.namespaces)
	for _, o := range m.namespaced {
		if o.GetNamespace() != ns.Name {
			t.Errorf("%s is in namespace %q, want %q", o.GetName(), o.GetNamespace(), ns.Name)
		}
	}

	w := checkWorkload(t, m)
	dep, c, svc, grpcPort := w.dep, w.c, w.svc, w.grpcPort
	mesh := one(t, "MeshConfigs", m.mesh)
	custom := checkMesh(t, m, mesh, w)

	// Only mesh peers reach extauthz, and only the enforcing proxies reach
	// its gRPC port.
	podLabels := labels.Set(dep.Spec.Template.Labels)
	pa := one(t, "PeerAuthentications", m.peerAuths)
	if pa.Namespace != ns.Name || !labels.SelectorFromSet(pa.Spec.GetSelector().GetMatchLabels()).Matches(podLabels) ||
		pa.Spec.GetMtls().GetMode() != securityv1beta1.PeerAuthentication_MutualTLS_STRICT {
		t.Error("a STRICT PeerAuthentication must select extauthz's pods")
	}
	if m := pa.Spec.GetPortLevelMtls()[uint32(grpcPort.Port)]; m != nil && m.GetMode() != securityv1beta1.PeerAuthentication_MutualTLS_STRICT {
		t.Error("the gRPC port must stay STRICT")
	}
	var allow bool
	for _, ap := range m.authzPolicies {
		if ap.Namespace != ns.Name || ap.Spec.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW ||
			!labels.SelectorFromSet(ap.Spec.GetSelector().GetMatchLabels()).Matches(podLabels) {
			continue
		}
		allow = true
		for _, r := range ap.Spec.GetRules() {
			grpcRule := len(r.GetTo()) == 0 // a rule without "to" matches every port
			for _, to := range r.GetTo() {
				grpcRule = grpcRule || slices.Contains(to.GetOperation().GetPorts(), strconv.Itoa(int(grpcPort.Port))) || len(to.GetOperation().GetPorts()) == 0
			}
			if grpcRule && (len(r.GetFrom()) == 0 || len(r.GetFrom()[0].GetSource().GetPrincipals()) == 0) {
				t.Errorf("ALLOW rule %v lets any caller reach the gRPC port", r)
			}
		}
	}
	if !allow {
		t.Error("no ALLOW AuthorizationPolicy restricts who may call extauthz")
	}

	checkHeaderUnderscores(t, m, mesh)
	checkNetworkPolicy(t, m, map[netPeer]bool{
		{gatewayNamespace, labels.Set(gatewayLabels).String()}:                              true,
		{custom.Namespace, labels.Set(custom.Spec.GetSelector().GetMatchLabels()).String()}: true,
	}, svc, c)
}

// workload is what checkWorkload found: the Deployment, its extauthz
// container, the configuration it loads, the Service and its gRPC port.
type workload struct {
	cfg      *config.Config
	dep      *appsv1.Deployment
	c        corev1.Container
	svc      *corev1.Service
	grpcPort corev1.ServicePort
}

// checkWorkload checks the Deployment, the configuration it loads (with the
// environment its Secrets give it), the Service, the PodDisruptionBudget
// and the migration Job of a set of manifests, as deploy/kubernetes/ and
// the Helm chart's rendering hold them.
func checkWorkload(t *testing.T, m *manifests) workload {
	t.Helper()
	// The configuration, parsed as serve parses it, with the environment
	// the Deployment gives it.
	dep := one(t, "Deployments", m.deployments)
	pod := dep.Spec.Template.Spec
	c := container(t, pod, "extauthz")
	cm := one(t, "ConfigMaps", m.configMaps)
	path := configPath(t, pod, c, cm)
	if c.Args[0] != "serve" || (len(c.Command) > 0 && !slices.Equal(c.Command, []string{"/extauthz"})) {
		t.Errorf("the extauthz container runs %v %v, want the image's entrypoint with serve", c.Command, c.Args)
	}
	cfg := parseConfig(t, "ConfigMap "+cm.Name+" "+path, []byte(cm.Data["config.yaml"]), containerEnv(t, m, c))
	if _, v := secretValue(t, m, c, "DATABASE_URL"); v == "" {
		t.Error("DATABASE_URL is empty")
	}
	if len(cfg.Routes) == 0 {
		t.Error("the ConfigMap has no routes: behind Istio, which sends no context_extensions, every request would get default_providers")
	}
	if !cfg.RoutesOnly {
		t.Error("the ConfigMap must set routes_only: behind Istio any caller could send context_extensions that pick providers and drop scopes")
	}
	if cfg.AllowInsecureHTTP {
		t.Error("the ConfigMap must not set allow_insecure_http")
	}
	for _, s := range m.secrets {
		for k, v := range s.StringData {
			if !strings.Contains(v, "REPLACE_ME") {
				t.Errorf("example Secret %s key %s = %q is not marked REPLACE_ME", s.Name, k, v)
			}
		}
		if len(s.Data) > 0 {
			t.Errorf("example Secret %s: use stringData with marked placeholders", s.Name)
		}
	}

	// Deployment: graceful shutdown, probes, ports, hardening.
	drain := cfg.Shutdown.DrainDelay.D() + cfg.Shutdown.Timeout.D()
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("terminationGracePeriodSeconds must be set")
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if grace < drain+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v must exceed shutdown.drain_delay + shutdown.timeout (%v) by a margin (5s)", grace, drain)
	}
	if a := dep.Spec.Template.Annotations["proxy.istio.io/config"]; a != "" {
		var pc struct {
			TerminationDrainDuration string `json:"terminationDrainDuration"`
		}
		if err := json.Unmarshal([]byte(a), &pc); err != nil {
			t.Errorf("proxy.istio.io/config: %v", err)
		} else if d, err := time.ParseDuration(pc.TerminationDrainDuration); err != nil || d < drain || grace <= d {
			t.Errorf("Istio terminationDrainDuration %q must cover the drain (%v) and end before the grace period", pc.TerminationDrainDuration, drain)
		}
	}
	metrics := containerPort(t, c, "metrics")
	if metrics != port(t, cfg.Listen.Metrics) {
		t.Errorf("container port metrics %d, listen.metrics %s", metrics, cfg.Listen.Metrics)
	}
	if g := containerPort(t, c, "grpc"); g != port(t, cfg.Listen.GRPC) {
		t.Errorf("container port grpc %d, listen.grpc %s", g, cfg.Listen.GRPC)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s must be an HTTP GET of %s", p.name, p.path)
			continue
		}
		h := p.probe.HTTPGet
		if h.Path != p.path || (h.Port.String() != "metrics" && h.Port.IntValue() != metrics) {
			t.Errorf("%s GET %s on port %s, want %s on the metrics port", p.name, h.Path, h.Port.String(), p.path)
		}
	}
	checkHardened(t, "Deployment "+dep.Name, pod, c)
	// With a HorizontalPodAutoscaler its minReplicas is the floor, and the
	// Deployment must not set replicas (every apply would reset them).
	replicas := dep.Spec.Replicas
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == dep.Name {
			if dep.Spec.Replicas != nil {
				t.Error("the Deployment sets replicas and a HorizontalPodAutoscaler scales it: every upgrade would reset the replicas")
			}
			replicas = h.Spec.MinReplicas
		}
	}
	if replicas == nil || *replicas < 2 {
		t.Error("run at least 2 replicas: the PodDisruptionBudget and rolling updates need one to stay")
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Fatalf("the Deployment's selector does not match its pods: %v", err)
	}
	sa := one(t, "ServiceAccounts", m.serviceAccounts)
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, sa.Name)
	}

	// Service: both ports, to the pods' named ports.
	svc := one(t, "Services", m.services)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Error("the Service does not select the Deployment's pods")
	}
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p
		if tp := p.TargetPort.String(); containerPort(t, c, tp) == 0 {
			t.Errorf("Service port %s targets %s", p.Name, tp)
		}
	}
	grpcPort, ok := svcPorts["grpc"]
	if !ok || grpcPort.AppProtocol == nil || *grpcPort.AppProtocol != "grpc" {
		t.Error("the Service needs a port named grpc with appProtocol grpc (Envoy and Istio must speak HTTP/2 to it)")
	}
	if _, ok := svcPorts["metrics"]; !ok {
		t.Error("the Service needs a metrics port")
	}

	// PodDisruptionBudget: the same pods, and it lets one go.
	pdb := one(t, "PodDisruptionBudgets", m.pdbs)
	psel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !psel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("the PodDisruptionBudget does not select the Deployment's pods")
	}
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		if v := pdb.Spec.MaxUnavailable.String(); v == "0" || v == "0%" {
			t.Error("maxUnavailable 0 blocks every node drain")
		}
	case pdb.Spec.MinAvailable != nil:
		if replicas != nil && pdb.Spec.MinAvailable.IntValue() >= int(*replicas) {
			t.Error("minAvailable >= replicas blocks every node drain")
		}
	default:
		t.Error("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}

	// Migration Job: the same image, the schema owner's URL from the Secret.
	job := one(t, "Jobs", m.jobs)
	jpod := job.Spec.Template.Spec
	jc := container(t, jpod, "migrate")
	if len(jc.Args) == 0 || jc.Args[0] != "migrate" {
		t.Errorf("the Job runs %v, want migrate", jc.Args)
	}
	if jc.Image != c.Image {
		t.Errorf("the Job runs %s, the Deployment %s: migrate with the version that serves", jc.Image, c.Image)
	}
	if key, _ := secretValue(t, m, jc, "DATABASE_URL"); key == "" {
		t.Error("the Job's DATABASE_URL is not from the Secret")
	}
	if jpod.RestartPolicy != corev1.RestartPolicyNever && jpod.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("the Job's restartPolicy is %q", jpod.RestartPolicy)
	}
	if job.Spec.BackoffLimit == nil || job.Spec.ActiveDeadlineSeconds == nil {
		t.Error("the Job needs a backoffLimit and an activeDeadlineSeconds")
	}
	if job.Spec.Template.Annotations["sidecar.istio.io/inject"] != "false" {
		t.Error("the Job's pod must not get an Istio sidecar (the Job would never complete)")
	}
	checkHardened(t, "Job "+job.Name, jpod, jc)
	return workload{cfg: cfg, dep: dep, c: c, svc: svc, grpcPort: grpcPort}
}

// checkMesh checks Istio's extension provider (it reaches the Service's
// gRPC port, with a time-out above a refresh, 503 on error, and fails
// closed) and returns the CUSTOM AuthorizationPolicy that names it.
func checkMesh(t *testing.T, m *manifests, mesh *meshv1alpha1.MeshConfig, w workload) *istiosecurityv1.AuthorizationPolicy {
	t.Helper()
	cfg, svc, grpcPort := w.cfg, w.svc, w.grpcPort
	switch n := mesh.GetPathNormalization().GetNormalization(); n {
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES, meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES:
	default:
		t.Errorf("pathNormalization %v: routes match paths, so proxies must normalize them and merge slashes", n)
	}
	var custom *istiosecurityv1.AuthorizationPolicy
	for _, ap := range m.authzPolicies {
		if ap.Spec.GetAction() == securityv1beta1.AuthorizationPolicy_CUSTOM {
			if custom != nil {
				t.Fatal("more than one CUSTOM AuthorizationPolicy")
			}
			custom = ap
		}
	}
	if custom == nil {
		t.Fatal("no AuthorizationPolicy with action CUSTOM")
	}
	var provider *meshv1alpha1.MeshConfig_ExtensionProvider
	for _, p := range mesh.GetExtensionProviders() {
		if p.GetName() == custom.Spec.GetProvider().GetName() {
			provider = p
		}
	}
	if provider == nil {
		t.Fatalf("the CUSTOM policy names provider %q, which the MeshConfig does not define", custom.Spec.GetProvider().GetName())
	}
	g := provider.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatal("the extension provider must be envoyExtAuthzGrpc (context and headers the service reads come over gRPC)")
	}
	if want := svc.Name + "." + svc.Namespace + ".svc.cluster.local"; g.GetService() != want {
		t.Errorf("envoyExtAuthzGrpc.service = %q, want %q", g.GetService(), want)
	}
	if g.GetPort() != uint32(grpcPort.Port) {
		t.Errorf("envoyExtAuthzGrpc.port = %d, want the Service's grpc port %d", g.GetPort(), grpcPort.Port)
	}
	if g.GetTimeout() == nil || g.GetTimeout().AsDuration() <= cfg.Refresh.Timeout.D() {
		t.Errorf("envoyExtAuthzGrpc.timeout = %v: must be set above refresh.timeout (%v); Istio's default is 600s", g.GetTimeout().AsDuration(), cfg.Refresh.Timeout.D())
	}
	if g.GetStatusOnError() != "503" {
		t.Errorf("envoyExtAuthzGrpc.statusOnError = %q, want \"503\" (Istio's default is 403)", g.GetStatusOnError())
	}
	if g.GetFailOpen() {
		t.Error("envoyExtAuthzGrpc.failOpen must be false")
	}
	// A CUSTOM policy checks only the requests its rules match: match
	// everything but listed exceptions, so a new path cannot skip the Check.
	if len(custom.Spec.GetRules()) == 0 {
		t.Error("the CUSTOM policy has no rules: it checks nothing")
	}
	for _, r := range custom.Spec.GetRules() {
		for _, to := range r.GetTo() {
			op := to.GetOperation()
			if len(op.GetPaths()) > 0 || len(op.GetHosts()) > 0 || len(op.GetMethods()) > 0 || len(op.GetPorts()) > 0 {
				t.Errorf("CUSTOM rule %v selects requests positively: any other request is never checked; list exceptions with notPaths", op)
			}
		}
		if len(r.GetFrom()) > 0 || len(r.GetWhen()) > 0 {
			t.Errorf("CUSTOM rule %v restricts by source or condition: other requests are never checked", r)
		}
	}
	return custom
}

// gatewayNamespace and gatewayLabels identify the Istio ingress gateway's
// pods, which call extauthz when the CUSTOM policy runs at the gateway.
const gatewayNamespace = "istio-system"

var gatewayLabels = map[string]string{"istio": "ingressgateway"}

// checkHeaderUnderscores: the proxies refuse header names with underscores,
// through the mesh's ProxyConfig and through the gateway's EnvoyFilter.
func checkHeaderUnderscores(t *testing.T, m *manifests, mesh *meshv1alpha1.MeshConfig) {
	t.Helper()
	if a := mesh.GetDefaultConfig().GetConnectionSettings().GetHttpHeadersWithUnderscoresAction(); a != meshv1alpha1.ProxyConfig_ConnectionSettings_HEADERS_WITH_UNDERSCORES_REJECT_REQUEST {
		t.Errorf("defaultConfig.connectionSettings.httpHeadersWithUnderscoresAction = %v, want HEADERS_WITH_UNDERSCORES_REJECT_REQUEST", a)
	}
	ef := one(t, "EnvoyFilters", m.envoyFilters)
	if ef.Namespace != gatewayNamespace || !labels.SelectorFromSet(ef.Spec.GetWorkloadSelector().GetLabels()).Matches(labels.Set(gatewayLabels)) ||
		len(ef.Spec.GetWorkloadSelector().GetLabels()) == 0 {
		t.Errorf("EnvoyFilter %s must select the ingress gateway (%s, %v)", ef.Name, gatewayNamespace, gatewayLabels)
	}
	var rejects bool
	for _, cp := range ef.Spec.GetConfigPatches() {
		if cp.GetApplyTo() != networkingv1alpha3.EnvoyFilter_NETWORK_FILTER || cp.GetMatch().GetContext() != networkingv1alpha3.EnvoyFilter_GATEWAY ||
			cp.GetMatch().GetListener().GetFilterChain().GetFilter().GetName() != "envoy.filters.network.http_connection_manager" ||
			cp.GetPatch().GetOperation() != networkingv1alpha3.EnvoyFilter_Patch_MERGE {
			t.Errorf("EnvoyFilter patch %v must MERGE into the gateway's HTTP connection manager", cp.GetMatch())
			continue
		}
		// The patch value as Envoy receives it: its typed_config must be a
		// valid HttpConnectionManager fragment (unknown fields refused).
		tc, err := protojson.Marshal(cp.GetPatch().GetValue().GetFields()["typed_config"])
		if err != nil {
			t.Fatal(err)
		}
		var a anypb.Any
		if err := protojson.Unmarshal(tc, &a); err != nil {
			t.Fatalf("EnvoyFilter typed_config: %v", err)
		}
		var hcm hcmv3.HttpConnectionManager
		if err := a.UnmarshalTo(&hcm); err != nil {
			t.Fatalf("EnvoyFilter typed_config is not an HttpConnectionManager: %v", err)
		}
		if err := hcm.GetCommonHttpProtocolOptions().ValidateAll(); err != nil {
			t.Errorf("EnvoyFilter common_http_protocol_options: %v", err)
		}
		if hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() == corev3.HttpProtocolOptions_REJECT_REQUEST {
			rejects = true
		}
	}
	if !rejects {
		t.Error("the gateway's EnvoyFilter must set common_http_protocol_options.headers_with_underscores_action: REJECT_REQUEST")
	}
}

// netPeer is a NetworkPolicy peer: a namespace name and a pod label selector.
type netPeer struct{ namespace, labels string }

// checkNetworkPolicy: extauthz's pods admit the gRPC port only from the
// peers in want (the pods that enforce the CUSTOM policy, the gateway), and
// the metrics port only from the monitoring namespace.
func checkNetworkPolicy(t *testing.T, m *manifests, want map[netPeer]bool, svc *corev1.Service, c corev1.Container) {
	t.Helper()
	dep := one(t, "Deployments", m.deployments)
	np := one(t, "NetworkPolicies", m.networkPolicies)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("NetworkPolicy %s does not select the Deployment's pods", np.Name)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy %s must have policyType Ingress", np.Name)
	}
	// A rule's port, resolved to the container port it admits.
	containerPortOf := func(p networkingv1.NetworkPolicyPort) int {
		if p.Port == nil {
			return -1 // every port
		}
		if p.Port.Type == intstr.String { // a container port's name
			return containerPort(t, c, p.Port.String())
		}
		return p.Port.IntValue()
	}
	grpc, metrics := containerPort(t, c, "grpc"), containerPort(t, c, "metrics")
	for _, sp := range svc.Spec.Ports {
		if containerPort(t, c, sp.TargetPort.String()) != map[string]int{"grpc": grpc, "metrics": metrics}[sp.Name] {
			t.Errorf("Service port %s does not reach the container port the NetworkPolicy admits", sp.Name)
		}
	}
	grpcPeers := map[netPeer]bool{}
	var metricsRule bool
	for i, r := range np.Spec.Ingress {
		if len(r.From) == 0 || len(r.Ports) == 0 {
			t.Errorf("ingress rule %d admits any source or any port", i)
			continue
		}
		var ports []int
		for _, p := range r.Ports {
			ports = append(ports, containerPortOf(p))
		}
		for _, f := range r.From {
			if f.IPBlock != nil || f.NamespaceSelector == nil {
				t.Errorf("ingress rule %d: peer %+v is not limited to a namespace", i, f)
				continue
			}
			ns := f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]
			if ns == "" || len(f.NamespaceSelector.MatchLabels) != 1 || len(f.NamespaceSelector.MatchExpressions) > 0 {
				t.Errorf("ingress rule %d: select the namespace by kubernetes.io/metadata.name alone, got %v", i, f.NamespaceSelector)
			}
			if slices.Contains(ports, grpc) || slices.Contains(ports, -1) {
				if f.PodSelector == nil || len(f.PodSelector.MatchLabels) == 0 {
					t.Errorf("ingress rule %d lets every pod of namespace %q reach the gRPC port", i, ns)
					continue
				}
				grpcPeers[netPeer{ns, labels.Set(f.PodSelector.MatchLabels).String()}] = true
			}
			if slices.Contains(ports, metrics) {
				metricsRule = true
				if ns != "monitoring" {
					t.Errorf("ingress rule %d admits namespace %q to the metrics port, want monitoring", i, ns)
				}
			}
		}
	}
	for p := range want {
		if !grpcPeers[p] {
			t.Errorf("the NetworkPolicy does not admit %v to the gRPC port: the CUSTOM policy's Checks would fail", p)
		}
	}
	for p := range grpcPeers {
		if !want[p] {
			t.Errorf("the NetworkPolicy admits %v to the gRPC port, which enforces no CUSTOM policy", p)
		}
	}
	if !metricsRule {
		t.Error("the NetworkPolicy admits nobody to the metrics port: Prometheus cannot scrape")
	}
}

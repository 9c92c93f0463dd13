# Shell functions of the sample hello.
greeting_dir=/nix/store/w7v6awcayb2q8yiy3gqhbj15n38ak9ph-greeting-1.0/share/greeting
hello_main() {
	cat "$greeting_dir/${1:-en}.txt"
}
